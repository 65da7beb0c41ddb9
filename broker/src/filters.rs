//! Filters an operator writes in the configuration (static subscriptions, permissions),
//! compiled and held to the same evaluation cost budget as clients' filters.

use palio_topology::SharedFilter;

/// Compiles `source` and checks it against the default evaluation cost budget; the error
/// says what is wrong with it.
pub(crate) fn compile(source: &str) -> Result<SharedFilter, String> {
    let filter = SharedFilter::parse(source).map_err(|e| e.to_string())?;
    filter
        .filter()
        .check_cost(&palio_filter::CostBudget::default())
        .map_err(|e| e.to_string())?;
    Ok(filter)
}
