//! Lanes: where a journaled call sits in a run. The main script is one lane; each branch of a
//! `parallel` is a lane of its own. A lane hands out positions in call order, so the n-th
//! journaled call of a lane has the same key on every replay, however the branches interleave:
//! `4` is the fifth call of the main script, `3.17.0` the first call of branch 17 of the
//! `parallel` at position 3.
//!
//! Rhai evaluation is synchronous and each lane runs on its own thread, so the current lane is
//! thread-local; registered functions find it without the script passing anything around.

use std::cell::RefCell;
use std::time::Instant;

/// The step attempt whose body is running on this thread.
#[derive(Clone, Debug)]
pub struct Body {
    pub key: String,
    pub name: String,
    pub attempt: u32,
    /// Set once the attempt has announced a side effect (see `RunContext::before_effect`).
    pub effects: bool,
    /// When the attempt's `timeout` expires.
    pub deadline: Option<Instant>,
}

#[derive(Debug)]
struct Lane {
    prefix: String,
    next: u64,
    body: Option<Body>,
}

thread_local! {
    static LANE: RefCell<Option<Lane>> = const { RefCell::new(None) };
}

/// Makes this thread run lane `prefix` ("" for the main script) until the guard drops.
pub fn enter(prefix: String) -> LaneGuard {
    LANE.with(|l| {
        *l.borrow_mut() = Some(Lane {
            prefix,
            next: 0,
            body: None,
        })
    });
    LaneGuard
}

pub struct LaneGuard;

impl Drop for LaneGuard {
    fn drop(&mut self) {
        LANE.with(|l| *l.borrow_mut() = None);
    }
}

/// Why a journaled call cannot take a position here.
#[derive(Debug)]
pub enum NoPosition {
    /// Not inside a run (cannot happen for scripts the engine runs).
    NoLane,
    /// Inside the body of step `name`.
    InBody { name: String },
}

/// Takes the next position of the current lane.
pub fn next_key() -> Result<String, NoPosition> {
    LANE.with(|l| {
        let mut l = l.borrow_mut();
        let lane = l.as_mut().ok_or(NoPosition::NoLane)?;
        if let Some(body) = &lane.body {
            return Err(NoPosition::InBody {
                name: body.name.clone(),
            });
        }
        let key = if lane.prefix.is_empty() {
            lane.next.to_string()
        } else {
            format!("{}.{}", lane.prefix, lane.next)
        };
        lane.next += 1;
        Ok(key)
    })
}

/// Marks the start of a step attempt's body on this thread.
pub fn begin_body(body: Body) {
    LANE.with(|l| {
        if let Some(lane) = l.borrow_mut().as_mut() {
            lane.body = Some(body);
        }
    })
}

/// Ends the body and returns what became of it (whether it made effects).
pub fn end_body() -> Option<Body> {
    LANE.with(|l| l.borrow_mut().as_mut().and_then(|lane| lane.body.take()))
}

/// The running body, if any.
pub fn current_body() -> Option<Body> {
    LANE.with(|l| l.borrow().as_ref().and_then(|lane| lane.body.clone()))
}

/// Records that the running body has announced its first effect.
pub fn mark_effects() {
    LANE.with(|l| {
        if let Some(body) = l.borrow_mut().as_mut().and_then(|lane| lane.body.as_mut()) {
            body.effects = true;
        }
    })
}

/// The running body's deadline, if it has one.
pub fn deadline() -> Option<Instant> {
    LANE.with(|l| {
        l.borrow()
            .as_ref()
            .and_then(|lane| lane.body.as_ref()?.deadline)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_per_lane_and_refused_inside_bodies() {
        let _g = enter(String::new());
        assert_eq!(next_key().unwrap(), "0");
        assert_eq!(next_key().unwrap(), "1");
        begin_body(Body {
            key: "1".into(),
            name: "s".into(),
            attempt: 1,
            effects: false,
            deadline: None,
        });
        assert!(matches!(next_key(), Err(NoPosition::InBody { .. })));
        assert!(!end_body().unwrap().effects);
        std::thread::spawn(|| {
            let _g = enter("2.5".into());
            assert_eq!(next_key().unwrap(), "2.5.0");
        })
        .join()
        .unwrap();
        assert_eq!(next_key().unwrap(), "2");
    }
}
