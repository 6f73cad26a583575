//! What a run says about itself: `log` and `warn` lines, and `outcome(title, items)`, what it
//! set out to recover and whether it did; journaled once, never repeated on replay.

use super::*;

impl RunContext {
    /// `log(message)`, and `warn(message)` (`warning`): journaled and shown once, never again
    /// on replay. A warning says something was left undone: the run, if it succeeds, is
    /// partial.
    pub(crate) fn log(&self, pos: Position, message: String, warning: bool) -> ScriptResult<()> {
        let shown = if warning {
            format!("warning: {message}")
        } else {
            message.clone()
        };
        let key = match lane::current_body() {
            Some(_) => None,
            None => {
                let key = self.position("log()", pos)?;
                if self
                    .recorded(&key, "log", |e| matches!(e, Entry::Log { .. }), pos)?
                    .is_some()
                {
                    return Ok(());
                }
                Some(key)
            }
        };
        self.record(Event::Logged {
            key,
            message,
            warning,
        })?;
        self.observer
            .progress(&self.id, Progress::Log { message: &shown });
        Ok(())
    }

    /// `outcome(title, items[, columns])`: declares what the run recovered. Every item is a map
    /// with `recovered: true|false`; `columns` names the fields to show, in order (default: the
    /// first item's fields, `recovered` apart). Journaled like `log`, so that reports read it
    /// from the journal and a replay does not declare it twice.
    pub(crate) fn outcome(
        &self,
        pos: Position,
        title: String,
        items: Array,
        columns: Option<Array>,
    ) -> ScriptResult<()> {
        let fail = |m: String| script_error(format!("outcome({title:?}): {m}"), pos);
        let mut values = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Some(map) = item.read_lock::<rhai::Map>() else {
                return Err(fail(format!(
                    "item {i} is {}, not a map like #{{ recovered: true, ... }}",
                    item.type_name()
                )));
            };
            if !map.get("recovered").is_some_and(|r| r.is_bool()) {
                return Err(fail(format!(
                    "item {i} has no `recovered: true` or `recovered: false`"
                )));
            }
            let value: Value = rhai::serde::from_dynamic(item)
                .map_err(|e| fail(format!("item {i} cannot be journaled: {e}")))?;
            values.push(value);
        }
        let columns: Vec<String> = match columns {
            Some(cols) => cols
                .into_iter()
                .map(|c| {
                    c.into_string()
                        .map_err(|t| fail(format!("a column name is {t}, not a string")))
                })
                .collect::<Result<_, _>>()?,
            None => values
                .first()
                .and_then(Value::as_object)
                .map(|m| m.keys().filter(|k| *k != "recovered").cloned().collect())
                .unwrap_or_default(),
        };
        let key = match lane::current_body() {
            Some(_) => None,
            None => {
                let key = self.position("outcome()", pos)?;
                let requested = format!("outcome({title:?})");
                if self
                    .recorded(
                        &key,
                        &requested,
                        |e| matches!(e, Entry::Outcome { .. }),
                        pos,
                    )?
                    .is_some()
                {
                    return Ok(());
                }
                Some(key)
            }
        };
        self.record(Event::OutcomeDeclared {
            key,
            title,
            columns,
            items: values,
        })
    }

    /// An outcome table declared by the engine itself (an undo run's way back), between steps.
    pub(crate) fn declare_outcome(
        &self,
        title: &str,
        columns: Vec<String>,
        items: Vec<Value>,
    ) -> Result<(), Error> {
        self.journal
            .append_durable(
                &self.id,
                self.clock.now(),
                Event::OutcomeDeclared {
                    key: None,
                    title: title.to_string(),
                    columns,
                    items,
                },
            )
            .map(drop)
            .map_err(Error::Journal)
    }
}
