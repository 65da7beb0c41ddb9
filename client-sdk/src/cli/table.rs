//! Aligned columns for the commands that print for people (`palio routes`, `palio peers`
//! without `--json`): a header row and rows of cells, each column as wide as its widest
//! cell, separated by two spaces, the last column unpadded.

use std::fmt::Write;

/// `header` and `rows` as aligned text, one line each.
pub(super) fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .filter_map(|r| r.get(i))
            .map(|c| c.chars().count())
            .chain(header.get(i).map(|h| h.chars().count()))
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let pad = widths.get(i).copied().unwrap_or(0);
                let _ = write!(line, "{cell:<pad$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let rows = vec![
            vec![
                "b2".to_owned(),
                "127.0.0.1:7402".to_owned(),
                "up".to_owned(),
            ],
            vec!["broker-three".to_owned(), "h:1".to_owned(), String::new()],
        ];
        assert_eq!(
            render(&["NAME", "ADDRESS", "STATE"], &rows),
            "NAME          ADDRESS         STATE\n\
             b2            127.0.0.1:7402  up\n\
             broker-three  h:1\n"
        );
        assert_eq!(render(&["A", "B"], &[]), "A  B\n");
    }
}
