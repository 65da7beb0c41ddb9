//! Events: the typed attributes a filter is evaluated against.
//!
//! A Palio notification maps one-to-one onto a CloudEvent: context attributes and extensions are
//! the attributes here, `data` is the payload (which filters never see, as in CESQL §1).

use serde_json::Value as Json;

use crate::value::{AttrName, InvalidAttrName, Value};

/// The attributes of one event, sorted by name, each name at most once.
///
/// A sorted vector rather than a map: events carry a handful of attributes, are built once and
/// read many times, and iteration in name order is what the matching index wants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Event {
    attrs: Vec<(AttrName, Value)>,
}

impl Event {
    /// An event with no attributes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, replacing any previous value.
    pub fn set(&mut self, name: AttrName, value: impl Into<Value>) -> &mut Self {
        let value = value.into();
        match self.attrs.binary_search_by(|(n, _)| n.cmp(&name)) {
            Ok(i) => self.attrs[i].1 = value,
            Err(i) => self.attrs.insert(i, (name, value)),
        }
        self
    }

    /// Builder form of [`Event::set`] that validates the name.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Result<Self, InvalidAttrName> {
        self.set(AttrName::new(name)?, value);
        Ok(self)
    }

    /// The value of attribute `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.attrs
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| &self.attrs[i].1)
    }

    /// Removes attribute `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<Value> {
        let i = self
            .attrs
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()?;
        Some(self.attrs.remove(i).1)
    }

    /// The attributes in name order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&AttrName, &Value)> {
        self.attrs.iter().map(|(n, v)| (n, v))
    }

    /// The number of attributes.
    pub fn len(&self) -> usize {
        self.attrs.len()
    }

    /// Whether the event has no attributes.
    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }

    /// Reads a CloudEvent in the JSON event format (as in the CESQL conformance files).
    ///
    /// Every member except `data` and `data_base64` becomes an attribute. Booleans stay
    /// booleans, integers that fit in 32 bits stay integers, strings stay strings; any other
    /// value (larger or fractional numbers, arrays, objects) is carried as its JSON text, as
    /// CESQL §3.2 requires for non-primitive attributes. `null` members are absent.
    pub fn from_cloudevent_json(json: &Json) -> Result<Self, EventError> {
        let Json::Object(members) = json else {
            return Err(EventError::NotAnObject);
        };
        let mut event = Event::new();
        for (name, value) in members {
            if name == "data" || name == "data_base64" {
                continue;
            }
            let name = AttrName::new(name.as_str())?;
            let value = match value {
                Json::Null => continue,
                Json::Bool(b) => Value::Bool(*b),
                Json::Number(n) => match n.as_i64().and_then(|i| i32::try_from(i).ok()) {
                    Some(i) => Value::Int(i),
                    None => Value::String(n.to_string()),
                },
                Json::String(s) => Value::String(s.clone()),
                other => Value::String(other.to_string()),
            };
            event.set(name, value);
        }
        Ok(event)
    }

    /// The event of `pairs`, in any order; a name given twice is refused (and returned), as
    /// when decoding. For decoders that read pairs without serde.
    pub fn from_pairs(mut pairs: Vec<(AttrName, Value)>) -> Result<Event, AttrName> {
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(i) = (1..pairs.len()).find(|&i| pairs[i - 1].0 == pairs[i].0) {
            return Err(pairs.swap_remove(i).0);
        }
        Ok(Event { attrs: pairs })
    }

    /// The event as a JSON object of its attributes.
    pub fn to_json(&self) -> Json {
        Json::Object(
            self.attrs
                .iter()
                .map(|(n, v)| {
                    let v = match v {
                        Value::Bool(b) => Json::Bool(*b),
                        Value::Int(i) => Json::from(*i),
                        Value::String(s) => Json::String(s.clone()),
                    };
                    (n.as_str().to_owned(), v)
                })
                .collect(),
        )
    }
}

/// On the wire an event is its list of `(name, value)` pairs, in name order.
impl serde::Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.attrs.iter())
    }
}

/// Decoding validates every name (see [`AttrName`]) and refuses an event that names an
/// attribute twice: the one place where duplicates are handled, so every reader of an event
/// sees the same attributes.
impl<'de> serde::Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Pairs;

        impl<'de> serde::de::Visitor<'de> for Pairs {
            type Value = Event;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of (attribute name, value) pairs")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Event, A::Error> {
                // At most what the format announces and a sane cap, so an announced length
                // cannot make us reserve much before the pairs are read.
                let mut attrs: Vec<(AttrName, Value)> =
                    Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(pair) = seq.next_element::<(AttrName, Value)>()? {
                    attrs.push(pair);
                }
                Event::from_pairs(attrs).map_err(|twice| {
                    serde::de::Error::custom(format_args!(
                        "attribute `{}` is named twice",
                        twice.as_str()
                    ))
                })
            }
        }

        deserializer.deserialize_seq(Pairs)
    }
}

impl FromIterator<(AttrName, Value)> for Event {
    fn from_iter<T: IntoIterator<Item = (AttrName, Value)>>(iter: T) -> Self {
        let mut event = Event::new();
        for (n, v) in iter {
            event.set(n, v);
        }
        event
    }
}

/// An event that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The JSON value is not an object.
    #[error("a CloudEvent in JSON must be an object")]
    NotAnObject,
    /// A member name is not a valid attribute name.
    #[error(transparent)]
    InvalidName(#[from] InvalidAttrName),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn travels_as_sorted_pairs_and_refuses_a_name_given_twice() {
        let ev = Event::new().with("b", 1).unwrap().with("a", "x").unwrap();
        let json = serde_json::to_value(&ev).unwrap();
        assert_eq!(json, serde_json::json!([["a", "x"], ["b", 1]]));
        let back: Event =
            serde_json::from_value(serde_json::json!([["b", 1], ["a", "x"]])).unwrap();
        assert_eq!(back, ev);
        let err = serde_json::from_value::<Event>(serde_json::json!([["a", 1], ["a", 2]]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("attribute `a` is named twice"), "{err}");
        assert!(serde_json::from_value::<Event>(serde_json::json!([["Bad-Name", 1]])).is_err());
    }

    #[test]
    fn reads_cloudevent_json() {
        let json = serde_json::json!({
            "specversion": "1.0", "id": "1", "source": "s", "type": "t",
            "n": 7, "big": 5_000_000_000i64, "ok": true, "obj": {"a": 1}, "data": {"x": 1},
            "gone": null
        });
        let ev = Event::from_cloudevent_json(&json).unwrap();
        assert_eq!(ev.get("n"), Some(&Value::Int(7)));
        assert_eq!(ev.get("big"), Some(&Value::from("5000000000")));
        assert_eq!(ev.get("ok"), Some(&Value::Bool(true)));
        assert_eq!(ev.get("obj"), Some(&Value::from("{\"a\":1}")));
        assert_eq!(ev.get("data"), None);
        assert_eq!(ev.get("gone"), None);
        assert_eq!(ev.len(), 8);
    }

    #[test]
    fn rejects_bad_names() {
        let json = serde_json::json!({"Bad": 1});
        assert!(matches!(
            Event::from_cloudevent_json(&json),
            Err(EventError::InvalidName(_))
        ));
    }

    #[test]
    fn set_replaces_and_keeps_order() {
        let mut ev = Event::new().with("b", 1).unwrap().with("a", 2).unwrap();
        ev.set(AttrName::new("b").unwrap(), 3);
        let names: Vec<_> = ev.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(ev.get("b"), Some(&Value::Int(3)));
    }
}
