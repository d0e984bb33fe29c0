//! Scheduled EventBridge rules (`rules`) and their targets (`rule_targets`), as JSON records
//! keyed by rule name and target id. A rule's targets cascade from it.
//!
//! For: plain storage (upsert, read, list in name order, delete, start-up loading). Not for:
//! EventBridge's rules (at most five targets, no delete while targets remain, validation):
//! the API checks those under its mutation lock before it writes. Not for when rules last
//! fired either: that mark lives in the queue database, written with the fired events.

use rusqlite::{params, OptionalExtension};
use serval_model::{Rule, RuleName, RuleTarget, TargetId};

use crate::versions::{decode, encode};
use crate::{Store, StoreError};

impl Store {
    /// Creates or replaces a rule; its targets are kept.
    pub fn put_rule(&self, rule: &Rule) -> Result<(), StoreError> {
        let json = encode(|| format!("rule {}", rule.name), rule)?;
        let w = self.writer();
        w.conn
            .prepare_cached(
                "INSERT INTO rules (name, config) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET config = excluded.config",
            )
            .and_then(|mut stmt| stmt.execute(params![rule.name.as_str(), json]))
            .map_err(StoreError::db("put rule"))?;
        Ok(())
    }

    /// One rule, or `None`.
    pub fn get_rule(&self, name: &RuleName) -> Result<Option<Rule>, StoreError> {
        let conn = self.reader();
        let json: Option<String> = conn
            .prepare_cached("SELECT config FROM rules WHERE name = ?1")
            .and_then(|mut stmt| stmt.query_row([name.as_str()], |r| r.get(0)).optional())
            .map_err(StoreError::db("read rule"))?;
        json.map(|j| decode(|| format!("rule {name}"), &j))
            .transpose()
    }

    /// Up to `limit` rules whose names start with `prefix` and sort after `after`, in name
    /// order (a page of ListRules).
    pub fn list_rules(
        &self,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Rule>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(
                "SELECT name, config FROM rules
                 WHERE substr(name, 1, length(?1)) = ?1 AND name > ?2
                 ORDER BY name LIMIT ?3",
            )
            .map_err(StoreError::db("list rules"))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(
                params![prefix.unwrap_or(""), after.unwrap_or(""), limit],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )
            .map_err(StoreError::db("list rules"))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, json) = row.map_err(StoreError::db("list rules"))?;
            out.push(decode(|| format!("rule {name}"), &json)?);
        }
        Ok(out)
    }

    /// How many rules there are (PutRule's bound).
    pub fn count_rules(&self) -> Result<usize, StoreError> {
        let conn = self.reader();
        let count: i64 = conn
            .prepare_cached("SELECT count(*) FROM rules")
            .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
            .map_err(StoreError::db("count rules"))?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    /// Deletes a rule and its targets; `false` if it did not exist.
    pub fn delete_rule(&self, name: &RuleName) -> Result<bool, StoreError> {
        let w = self.writer();
        let deleted = w
            .conn
            .prepare_cached("DELETE FROM rules WHERE name = ?1")
            .and_then(|mut stmt| stmt.execute([name.as_str()]))
            .map_err(StoreError::db("delete rule"))?;
        Ok(deleted > 0)
    }

    /// Creates or replaces targets of a rule (by id), in one transaction; `false` (and nothing
    /// written) if the rule does not exist.
    pub fn put_rule_targets(
        &self,
        rule: &RuleName,
        targets: &[RuleTarget],
    ) -> Result<bool, StoreError> {
        let mut rows = Vec::with_capacity(targets.len());
        for t in targets {
            rows.push((
                t.id.as_str(),
                encode(|| format!("target {} of rule {rule}", t.id), t)?,
            ));
        }
        let mut w = self.writer();
        let tx = w
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::db("begin put rule targets"))?;
        let exists = tx
            .prepare_cached("SELECT 1 FROM rules WHERE name = ?1")
            .and_then(|mut stmt| stmt.exists([rule.as_str()]))
            .map_err(StoreError::db("put rule targets"))?;
        if !exists {
            return Ok(false);
        }
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO rule_targets (rule, id, config) VALUES (?1, ?2, ?3)
                     ON CONFLICT (rule, id) DO UPDATE SET config = excluded.config",
                )
                .map_err(StoreError::db("put rule targets"))?;
            for (id, json) in &rows {
                stmt.execute(params![rule.as_str(), id, json])
                    .map_err(StoreError::db("put rule targets"))?;
            }
        }
        tx.commit()
            .map_err(StoreError::db("commit put rule targets"))?;
        Ok(true)
    }

    /// A rule's targets in id order (empty for a rule that does not exist).
    pub fn list_rule_targets(&self, rule: &RuleName) -> Result<Vec<RuleTarget>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT id, config FROM rule_targets WHERE rule = ?1 ORDER BY id")
            .map_err(StoreError::db("list rule targets"))?;
        let rows = stmt
            .query_map([rule.as_str()], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(StoreError::db("list rule targets"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row.map_err(StoreError::db("list rule targets"))?;
            out.push(decode(|| format!("target {id} of rule {rule}"), &json)?);
        }
        Ok(out)
    }

    /// Removes the given targets of a rule (ids it does not have are ignored), in one
    /// transaction; returns how many were removed.
    pub fn remove_rule_targets(
        &self,
        rule: &RuleName,
        ids: &[TargetId],
    ) -> Result<usize, StoreError> {
        let mut w = self.writer();
        let tx = w
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(StoreError::db("begin remove rule targets"))?;
        let mut removed = 0;
        {
            let mut stmt = tx
                .prepare_cached("DELETE FROM rule_targets WHERE rule = ?1 AND id = ?2")
                .map_err(StoreError::db("remove rule targets"))?;
            for id in ids {
                removed += stmt
                    .execute(params![rule.as_str(), id.as_str()])
                    .map_err(StoreError::db("remove rule targets"))?;
            }
        }
        tx.commit()
            .map_err(StoreError::db("commit remove rule targets"))?;
        Ok(removed)
    }

    /// Every rule with its targets, in name order (start-up).
    pub fn all_rules(&self) -> Result<Vec<(Rule, Vec<RuleTarget>)>, StoreError> {
        let rules = self.list_rules(None, None, usize::MAX)?;
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached("SELECT rule, id, config FROM rule_targets ORDER BY rule, id")
            .map_err(StoreError::db("list rule targets"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(StoreError::db("list rule targets"))?;
        let mut targets: std::collections::HashMap<String, Vec<RuleTarget>> = Default::default();
        for row in rows {
            let (rule, id, json) = row.map_err(StoreError::db("list rule targets"))?;
            let target = decode(|| format!("target {id} of rule {rule}"), &json)?;
            targets.entry(rule).or_default().push(target);
        }
        Ok(rules
            .into_iter()
            .map(|rule| {
                let t = targets.remove(rule.name.as_str()).unwrap_or_default();
                (rule, t)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serval_model::RuleState;

    use super::*;

    fn name(s: &str) -> RuleName {
        RuleName::parse(s).unwrap()
    }

    fn rule(n: &str, expr: &str) -> Rule {
        Rule {
            name: name(n),
            schedule_expression: expr.into(),
            state: RuleState::Enabled,
            description: None,
            role_arn: None,
            tags: BTreeMap::new(),
            anchor_ms: 1_000,
        }
    }

    fn target(id: &str, function: &str, input: Option<&str>) -> RuleTarget {
        RuleTarget {
            id: TargetId::parse_field(id, "id").unwrap(),
            arn: format!("arn:aws:lambda:us-east-1:000000000000:function:{function}"),
            input: input.map(str::to_owned),
            role_arn: None,
        }
    }

    fn ids(targets: &[RuleTarget]) -> Vec<&str> {
        targets.iter().map(|t| t.id.as_str()).collect()
    }

    #[test]
    fn rules_round_trip_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.get_rule(&name("r")).unwrap(), None);
        let mut r = rule("r", "rate(5 minutes)");
        r.description = Some("every five".into());
        r.tags.insert("team".into(), "core".into());
        store.put_rule(&r).unwrap();
        assert_eq!(store.get_rule(&name("r")).unwrap(), Some(r.clone()));
        r.state = RuleState::Disabled;
        r.schedule_expression = "cron(0 12 * * ? *)".into();
        store.put_rule(&r).unwrap();
        assert_eq!(store.get_rule(&name("r")).unwrap(), Some(r.clone()));
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.get_rule(&name("r")).unwrap(), Some(r));
    }

    #[test]
    fn counts_rules() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.count_rules().unwrap(), 0);
        for n in ["a", "b", "b"] {
            store.put_rule(&rule(n, "rate(1 minute)")).unwrap();
        }
        assert_eq!(store.count_rules().unwrap(), 2);
        store.delete_rule(&name("a")).unwrap();
        assert_eq!(store.count_rules().unwrap(), 1);
    }

    #[test]
    fn lists_rules_by_prefix_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for n in ["b-2", "a-1", "b-1", "c", "b-3"] {
            store.put_rule(&rule(n, "rate(1 day)")).unwrap();
        }
        let names = |rules: Vec<Rule>| -> Vec<String> {
            rules.into_iter().map(|r| r.name.to_string()).collect()
        };
        assert_eq!(
            names(store.list_rules(None, None, 100).unwrap()),
            ["a-1", "b-1", "b-2", "b-3", "c"]
        );
        assert_eq!(
            names(store.list_rules(Some("b-"), None, 2).unwrap()),
            ["b-1", "b-2"]
        );
        assert_eq!(
            names(store.list_rules(Some("b-"), Some("b-2"), 2).unwrap()),
            ["b-3"]
        );
        assert!(store.list_rules(Some("z"), None, 10).unwrap().is_empty());
        // A prefix is literal: no LIKE wildcards.
        store.put_rule(&rule("x_1", "rate(1 day)")).unwrap();
        store.put_rule(&rule("xa1", "rate(1 day)")).unwrap();
        assert_eq!(
            names(store.list_rules(Some("x_"), None, 10).unwrap()),
            ["x_1"]
        );
    }

    #[test]
    fn targets_upsert_by_id_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let r = name("r");
        assert!(!store
            .put_rule_targets(&r, &[target("t1", "f", None)])
            .unwrap());
        store.put_rule(&rule("r", "rate(1 minute)")).unwrap();
        assert!(store
            .put_rule_targets(
                &r,
                &[
                    target("t2", "g", None),
                    target("t1", "f", Some("{\"a\":1}"))
                ]
            )
            .unwrap());
        assert_eq!(ids(&store.list_rule_targets(&r).unwrap()), ["t1", "t2"]);
        store
            .put_rule_targets(&r, &[target("t1", "h", None)])
            .unwrap();
        let targets = store.list_rule_targets(&r).unwrap();
        assert_eq!(targets[0], target("t1", "h", None));
        // Replacing the rule keeps its targets.
        store.put_rule(&rule("r", "rate(2 minutes)")).unwrap();
        assert_eq!(store.list_rule_targets(&r).unwrap().len(), 2);
        let gone = [
            TargetId::parse_field("t2", "id").unwrap(),
            TargetId::parse_field("nope", "id").unwrap(),
        ];
        assert_eq!(store.remove_rule_targets(&r, &gone).unwrap(), 1);
        assert_eq!(ids(&store.list_rule_targets(&r).unwrap()), ["t1"]);
    }

    #[test]
    fn deleting_a_rule_cascades_to_its_targets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_rule(&rule("r", "rate(1 minute)")).unwrap();
        store.put_rule(&rule("s", "rate(1 minute)")).unwrap();
        store
            .put_rule_targets(&name("r"), &[target("t1", "f", None)])
            .unwrap();
        store
            .put_rule_targets(&name("s"), &[target("t1", "g", None)])
            .unwrap();
        assert!(store.delete_rule(&name("r")).unwrap());
        assert!(!store.delete_rule(&name("r")).unwrap());
        assert!(store.list_rule_targets(&name("r")).unwrap().is_empty());
        // A rule created again under the name starts without targets.
        store.put_rule(&rule("r", "rate(1 minute)")).unwrap();
        assert!(store.list_rule_targets(&name("r")).unwrap().is_empty());
        assert_eq!(store.list_rule_targets(&name("s")).unwrap().len(), 1);
    }

    #[test]
    fn all_rules_pairs_each_rule_with_its_targets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put_rule(&rule("b", "rate(1 minute)")).unwrap();
        store.put_rule(&rule("a", "cron(0 12 * * ? *)")).unwrap();
        store
            .put_rule_targets(
                &name("b"),
                &[target("x", "f", None), target("y", "g", Some("[]"))],
            )
            .unwrap();
        let all = store.all_rules().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].0.name.as_str(), "a");
        assert!(all[0].1.is_empty());
        assert_eq!(all[1].0.name.as_str(), "b");
        assert_eq!(ids(&all[1].1), ["x", "y"]);
        assert_eq!(all[1].1[1].input.as_deref(), Some("[]"));
    }
}
