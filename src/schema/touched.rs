//! What a run's statements touched, for reviewing only that part of a
//! schema: `analyze`, `proxy` and `run` with `--database`.

use std::collections::BTreeSet;

use foldhash::HashSet;

use super::relations::JoinPair;

/// The tables and JOIN conditions of a run's statements, each distinct
/// statement shape read once: what the schema rules are limited to.
#[derive(Debug, Default)]
pub struct Touched {
    seen: HashSet<u64>,
    pub tables: BTreeSet<String>,
    pub joins: BTreeSet<JoinPair>,
}

impl Touched {
    pub fn observe(&mut self, sql: &str) {
        let fp = crate::fingerprint::fingerprint(sql);
        if !self.seen.insert(fp.hash) {
            return;
        }
        if let Some(names) = crate::fingerprint::tables(sql) {
            self.tables.extend(names);
        }
        self.joins.extend(super::joins::join_pairs(sql));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_tables_and_join_pairs_reading_each_shape_once() {
        let mut touched = Touched::default();
        touched.observe(
            "select * from orders o join customers c on c.id = o.customer_id where o.id = 1",
        );
        touched.observe(
            "select * from orders o join customers c on c.id = o.customer_id where o.id = 2",
        );
        touched.observe("update stock set n = n - 1 where product_id = 3");
        assert_eq!(
            touched.seen.len(),
            2,
            "the second select has the first's shape"
        );
        assert_eq!(
            touched
                .tables
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
            vec!["customers", "orders", "stock"]
        );
        assert_eq!(touched.joins.len(), 1, "{:?}", touched.joins);
    }
}
