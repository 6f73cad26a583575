//! How evaluation errors read: the message without Rhai's position suffix (a structured error
//! as its `message`), and where it happened as `path:line:column`. A leaf module: the runbook
//! loader, the run and the bindings all use it, and it uses none of them.

/// An evaluation error's message without Rhai's "(line x, position y)" suffix.
pub fn plain_message(err: &rhai::EvalAltResult) -> String {
    match err.unwrap_inner() {
        rhai::EvalAltResult::ErrorRuntime(value, _) => {
            // A structured failure (the `ovh` object's error maps) reads as its message, never
            // as a raw map on the terminal.
            let message = value.read_lock::<rhai::Map>().and_then(|m| {
                m.get("message")
                    .and_then(|v| v.clone().into_immutable_string().ok())
            });
            match message {
                Some(m) => m.to_string(),
                None => value.to_string(),
            }
        }
        other => {
            let text = other.to_string();
            match text.rfind(" (line ") {
                Some(i) if text.ends_with(')') => text[..i].to_string(),
                _ => text,
            }
        }
    }
}

/// Where an evaluation error happened, as `path:line:column`, from the innermost position; in
/// the module file when it happened in a module's function.
pub fn error_location(path: &str, err: &rhai::EvalAltResult) -> String {
    let mut pos = err.unwrap_inner().position();
    if pos.is_none() {
        pos = err.position();
    }
    let file = innermost_source(err).unwrap_or_else(|| path.to_string());
    match (pos.line(), pos.position()) {
        (Some(line), Some(col)) => format!("{file}:{line}:{col}"),
        (Some(line), None) => format!("{file}:{line}"),
        _ => file,
    }
}

/// The source (file) of the innermost function call an error went through, if it names one.
fn innermost_source(err: &rhai::EvalAltResult) -> Option<String> {
    use rhai::EvalAltResult as E;
    let mut found = None;
    let mut e = err;
    loop {
        match e {
            E::ErrorInFunctionCall(_, source, inner, _) | E::ErrorInModule(source, inner, _) => {
                if !source.is_empty() {
                    found = Some(source.clone());
                }
                e = inner;
            }
            _ => return found,
        }
    }
}
