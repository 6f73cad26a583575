//! The way back: `lifeboat undo RUN`.
//!
//! A step may declare how to undo it (`undo: |result| ...`) or that it cannot be undone
//! (`irreversible: "why"`). An undo is a run of its own, linked to the original
//! (`RunRecord::undo_of`), that executes the compensations of the original's finished steps,
//! newest first. Closures cannot be stored, so every execution of the undo run (the first
//! and each resume) finds them the way resume finds everything: it replays the original's
//! runbook over the original's journal, in a context that writes nothing and waits for nothing
//! ([`Forward`]), where each finished step hands over its `undo` closure with the variables it
//! captured. The replay ends where the original's journal ends. The compensations then run in
//! the undo run's own lanes (`undo.<original key>`), as ordinary runbook code: their steps
//! are journaled, checked, retried and reconciled like any other.
//!
//! Order: the original's lanes are undone in reverse; the branches of one of its `parallel`s
//! are undone in parallel, at most its `limit` at once. A failed compensation stops the rest
//! of its lane (what came before it in the original may depend on it), not its siblings.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rhai::{Dynamic, EvalAltResult, FnPtr, AST};
use serde::Serialize;
use serde_json::{json, Value};

use super::diagnostics::plain_message;
use super::run::{lock, script_error, stop_error, RunContext};
use super::step::StepOptions;
use super::{lane, Error, Silent};
use crate::journal::{Event, Mode, RunId, RunRecord, RunState, RunView};

/// The title of the outcome table an undo run declares: one row per step of the original.
pub const OUTCOME_TITLE: &str = "way back";

/// What one step of the original needs on the way back, in the order it will be undone.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WayBackItem {
    /// The step's position in the original.
    pub key: String,
    pub step: String,
    #[serde(flatten)]
    pub kind: WayKind,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "way", rename_all = "snake_case")]
pub enum WayKind {
    /// Its `undo` will run.
    Undo,
    /// It declared `irreversible: why`: left alone, and said so.
    Irreversible { why: String },
    /// It changed things outside lifeboat and declares neither `undo` nor `irreversible`.
    NotDeclared,
    /// It had not finished when the original stopped (in flight, or waiting to retry), so
    /// nothing can say what it did: a person must.
    Unfinished { changed: bool },
}

impl WayBackItem {
    /// Whether the way back covers this step (it will be, or was, undone).
    pub fn is_covered(&self) -> bool {
        self.kind == WayKind::Undo
    }

    /// One line for the terminal and the outcome table.
    pub fn describe(&self) -> String {
        match &self.kind {
            WayKind::Undo => "undo".to_string(),
            WayKind::Irreversible { why } => format!("irreversible: {why}"),
            WayKind::NotDeclared => {
                "it changed things and declares no undo: undo it by hand".to_string()
            }
            WayKind::Unfinished { changed: true } => "it was in flight when the original stopped and may have changed things: find out, and undo it by hand".to_string(),
            WayKind::Unfinished { changed: false } => "it had not finished when the original stopped (nothing sent yet)".to_string(),
        }
    }
}

/// The way back of a run, as `lifeboat undo` shows it before anything runs.
#[derive(Clone, Debug, Serialize)]
pub struct WayBack {
    pub original: RunId,
    pub runbook: String,
    /// Every step that matters on the way back, in the order it will be undone.
    pub items: Vec<WayBackItem>,
}

impl WayBack {
    pub fn undos(&self) -> usize {
        self.items.iter().filter(|i| i.is_covered()).count()
    }
}

/// A finished step of the original, as the replay found it.
struct Found {
    key: String,
    name: String,
    undo: Option<(FnPtr, Value)>,
    irreversible: Option<String>,
    /// Unfinished in the original (the replay ended there).
    unfinished: bool,
    changed: bool,
}

/// The collector of a replay of the original (see [`RunContext::forward`]).
pub(crate) struct Forward {
    /// Steps of the original that got past their effect barrier at least once.
    changed: HashSet<String>,
    found: Mutex<Vec<Found>>,
    /// `parallel` positions and their `limit`.
    parallels: Mutex<HashMap<String, usize>>,
}

impl Forward {
    /// A finished step of the original: what it says about its way back.
    pub(crate) fn finished(
        &self,
        key: &str,
        name: &str,
        opts: &StepOptions,
        result: &Value,
        decided: Option<&str>,
    ) {
        // A step a person skipped was not run by lifeboat: there is nothing of it to undo.
        if decided.is_some_and(|d| d.starts_with("skip")) {
            return;
        }
        let changed = self.changed.contains(key) || decided.is_some();
        if opts.undo.is_none() && opts.irreversible.is_none() && !changed {
            return;
        }
        lock(&self.found).push(Found {
            key: key.to_string(),
            name: name.to_string(),
            undo: opts.undo.clone().map(|f| (f, result.clone())),
            irreversible: opts.irreversible.clone(),
            unfinished: false,
            changed,
        });
    }

    /// A step the original had not finished: the replay ends there.
    pub(crate) fn unfinished(&self, key: &str, name: &str, changed: bool) {
        lock(&self.found).push(Found {
            key: key.to_string(),
            name: name.to_string(),
            undo: None,
            irreversible: None,
            unfinished: true,
            changed,
        });
    }

    pub(crate) fn parallel(&self, key: &str, limit: usize) {
        lock(&self.parallels).insert(key.to_string(), limit);
    }
}

/// What the replay of the original found, in undo order.
pub(crate) struct Replayed {
    found: Vec<Found>,
    tree: Node,
}

impl Replayed {
    fn way_back(&self, original: &RunRecord) -> WayBack {
        let mut order = Vec::new();
        self.tree.flatten(&mut order);
        WayBack {
            original: original.id.clone(),
            runbook: original.runbook.name.clone(),
            items: order.into_iter().map(|i| self.item(i)).collect(),
        }
    }

    fn item(&self, i: usize) -> WayBackItem {
        let f = &self.found[i];
        let kind = if f.unfinished {
            WayKind::Unfinished { changed: f.changed }
        } else if f.undo.is_some() {
            WayKind::Undo
        } else if let Some(why) = &f.irreversible {
            WayKind::Irreversible { why: why.clone() }
        } else {
            WayKind::NotDeclared
        };
        WayBackItem {
            key: f.key.clone(),
            step: f.name.clone(),
            kind,
        }
    }
}

/// The order of the way back: a lane's positions undone last first; the branches of a
/// `parallel` undone side by side.
#[derive(Debug)]
enum Node {
    Step(usize),
    Lane(Vec<Node>),
    Parallel { limit: usize, branches: Vec<Node> },
}

impl Node {
    /// Builds the lane `prefix` from `items` (position segments and index into the found
    /// steps, sorted, all under `prefix`).
    fn lane(prefix: usize, items: &[(Vec<u64>, usize)], limits: &HashMap<Vec<u64>, usize>) -> Node {
        let mut nodes = Vec::new();
        let mut i = 0;
        while i < items.len() {
            let (segments, index) = &items[i];
            if segments.len() == prefix + 1 {
                nodes.push(Node::Step(*index));
                i += 1;
                continue;
            }
            // Inside the `parallel` at this position: group by branch.
            let at = &segments[..=prefix];
            let end = i + items[i..]
                .iter()
                .take_while(|(s, _)| s.len() > prefix + 1 && &s[..=prefix] == at)
                .count();
            let mut branches = Vec::new();
            let mut j = i;
            while j < end {
                let branch = items[j].0[prefix + 1];
                let k = j + items[j..end]
                    .iter()
                    .take_while(|(s, _)| s[prefix + 1] == branch)
                    .count();
                branches.push(Node::lane(prefix + 2, &items[j..k], limits));
                j = k;
            }
            nodes.push(Node::Parallel {
                limit: limits.get(at).copied().unwrap_or(8),
                branches,
            });
            i = end;
        }
        Node::Lane(nodes)
    }

    /// The found steps in the order they are undone.
    fn flatten(&self, out: &mut Vec<usize>) {
        match self {
            Node::Step(i) => out.push(*i),
            Node::Lane(nodes) => nodes.iter().rev().for_each(|n| n.flatten(out)),
            Node::Parallel { branches, .. } => branches.iter().rev().for_each(|n| n.flatten(out)),
        }
    }
}

fn segments(key: &str) -> Vec<u64> {
    key.split('.').filter_map(|s| s.parse().ok()).collect()
}

/// Checks that `original` may be undone now.
pub(crate) fn check_undoable(engine: &super::Engine, original: &RunRecord) -> Result<(), Error> {
    let refuse = |reason: String| {
        Err(Error::NotUndoable {
            id: original.id.clone(),
            reason,
        })
    };
    if let Some(of) = &original.undo_of {
        return refuse(format!(
            "is itself the undo of run {of}: to go forward again, start a new run of its runbook"
        ));
    }
    if original.mode == Mode::Plan {
        return refuse("was a plan: it changed nothing, so there is nothing to undo".to_string());
    }
    if engine.live.is_live(&original.id) {
        return refuse("is running: undo it once it has stopped".to_string());
    }
    for other in engine.journal.runs()? {
        if other.undo_of.as_ref() != Some(&original.id) {
            continue;
        }
        match &other.state {
            // A plan of the way back changed nothing.
            _ if other.mode == Mode::Plan => {}
            RunState::Succeeded { .. } => {
                return refuse(format!("was undone already by run {}", other.id))
            }
            RunState::Aborted { .. } => {}
            state => {
                return refuse(format!(
                    "has an unfinished undo, run {} ({}): go on with `lifeboat resume {}`",
                    other.id,
                    state.label(),
                    other.id
                ))
            }
        }
    }
    Ok(())
}

/// Replays the original run over its journal and returns what its finished steps declared.
pub(crate) fn replay(engine: &super::Engine, original: &RunRecord) -> Result<Replayed, Error> {
    let runbook = super::Runbook::from_stored(
        &original.runbook.path,
        original.source.clone(),
        original.modules.clone(),
        &engine.limits,
    )?;
    let events = engine.journal.events(&original.id)?;
    let view = RunView::from_events(&events)?;
    let forward = Arc::new(Forward {
        changed: events
            .iter()
            .filter_map(|e| match &e.event {
                Event::StepEffect { key, .. } => Some(key.clone()),
                _ => None,
            })
            .collect(),
        found: Mutex::default(),
        parallels: Mutex::default(),
    });
    let mut ctx = RunContext::new(
        original.id.clone(),
        engine.journal.clone(),
        engine.clock.clone(),
        Arc::new(Silent),
        engine.limits,
        runbook.path.clone(),
        view,
        super::RunOptions {
            no_wait: true,
            ..Default::default()
        },
        Vec::new(),
        None,
        false,
    );
    ctx.forward = Some(forward.clone());
    let ctx = Arc::new(ctx);
    let script = engine.script_engine(&ctx, &runbook)?;
    let mut scope = engine.script_scope(original);
    {
        let _lane = lane::enter(String::new());
        // However it ends (where the journal ends, or on the original's own failure), what
        // matters is what it found on the way.
        let _ = script.eval_ast_with_scope::<Dynamic>(&mut scope, &runbook.ast);
    }
    let found = std::mem::take(&mut *lock(&forward.found));
    let limits: HashMap<Vec<u64>, usize> = lock(&forward.parallels)
        .iter()
        .map(|(k, l)| (segments(k), *l))
        .collect();
    let mut items: Vec<(Vec<u64>, usize)> = found
        .iter()
        .enumerate()
        .map(|(i, f)| (segments(&f.key), i))
        .collect();
    items.sort();
    let tree = Node::lane(0, &items, &limits);
    Ok(Replayed { found, tree })
}

/// What `lifeboat undo` shows before it starts.
pub(crate) fn way_back(engine: &super::Engine, original: &RunRecord) -> Result<WayBack, Error> {
    Ok(replay(engine, original)?.way_back(original))
}

/// How one compensation ended, this execution.
enum Undone {
    Done,
    Failed(String),
}

/// Whether a lane of the way back may go on.
enum Flow {
    Go,
    /// A compensation failed: the rest of this lane is left.
    Failed,
    /// The run is stopping, pausing or hit a limit: everything ends with this error.
    Stop(Box<EvalAltResult>),
}

struct Exec<'a> {
    ctx: &'a RunContext,
    engine: &'a rhai::Engine,
    ast: &'a AST,
    found: &'a [Found],
    results: Vec<Mutex<Option<Undone>>>,
}

impl Exec<'_> {
    fn node(&self, node: &Node) -> Flow {
        match node {
            Node::Step(i) => self.step(*i),
            Node::Lane(nodes) => {
                for n in nodes.iter().rev() {
                    match self.node(n) {
                        Flow::Go => {}
                        other => return other,
                    }
                }
                Flow::Go
            }
            Node::Parallel { limit, branches } => {
                let next = AtomicUsize::new(0);
                let flows: Vec<Mutex<Option<Flow>>> =
                    branches.iter().map(|_| Mutex::new(None)).collect();
                std::thread::scope(|scope| {
                    for _ in 0..(*limit).min(branches.len()) {
                        let (next, flows) = (&next, &flows);
                        std::thread::Builder::new()
                            .stack_size(8 << 20)
                            .spawn_scoped(scope, move || loop {
                                let n = next.fetch_add(1, Ordering::SeqCst);
                                if n >= branches.len() {
                                    break;
                                }
                                // Last branch first, as the lane it stands in.
                                let b = branches.len() - 1 - n;
                                *lock(&flows[b]) = Some(self.node(&branches[b]));
                            })
                            .expect("spawning an undo branch thread");
                    }
                });
                let mut flow = Flow::Go;
                for f in flows {
                    match f.into_inner().unwrap_or_else(|p| p.into_inner()) {
                        Some(Flow::Stop(e)) => return Flow::Stop(e),
                        Some(Flow::Failed) => flow = Flow::Failed,
                        Some(Flow::Go) => {}
                        None => return Flow::Stop(stop_error()),
                    }
                }
                flow
            }
        }
    }

    fn step(&self, i: usize) -> Flow {
        let found = &self.found[i];
        let Some((undo, result)) = &found.undo else {
            return Flow::Go;
        };
        if found.unfinished {
            return Flow::Go;
        }
        if self.ctx.is_winding_down() {
            return Flow::Stop(stop_error());
        }
        let _lane = lane::enter(format!("undo.{}", found.key));
        let arg = match rhai::serde::to_dynamic(result) {
            Ok(v) => v,
            Err(e) => return self.failed(i, format!("its result cannot be read back: {e}")),
        };
        let mut outcome = undo.call::<Dynamic>(self.engine, self.ast, (arg,));
        if let Err(e) = &outcome {
            // `undo: || ...`: a compensation that does not need the result.
            if matches!(e.unwrap_inner(), EvalAltResult::ErrorFunctionNotFound(f, _) if f.starts_with(undo.fn_name()))
            {
                outcome = undo.call::<Dynamic>(self.engine, self.ast, ());
            }
        }
        match outcome {
            Ok(_) => {
                *lock(&self.results[i]) = Some(Undone::Done);
                Flow::Go
            }
            Err(e) if !e.is_catchable() => Flow::Stop(e),
            Err(e) => self.failed(i, plain_message(&e)),
        }
    }

    fn failed(&self, i: usize, why: String) -> Flow {
        *lock(&self.results[i]) = Some(Undone::Failed(why));
        Flow::Failed
    }
}

/// Executes an undo run: replays the original, runs the compensations in `ctx` (the undo
/// run's own context, whose functions `script` is registered with), and declares the way
/// back's outcome. A failed compensation is a (catchable-style) error naming every failure.
pub(crate) fn execute(
    engine: &super::Engine,
    ctx: &RunContext,
    script: &rhai::Engine,
    original: &RunId,
) -> Result<Result<Dynamic, Box<EvalAltResult>>, Error> {
    let original = engine.journal.run(original)?;
    let replayed = replay(engine, &original)?;
    let ast = ctx.callable_ast();
    let exec = Exec {
        ctx,
        engine: script,
        ast: &ast,
        found: &replayed.found,
        results: replayed.found.iter().map(|_| Mutex::new(None)).collect(),
    };
    if let Flow::Stop(e) = exec.node(&replayed.tree) {
        return Ok(Err(e));
    }
    let plan = ctx.plan();
    let mut order = Vec::new();
    replayed.tree.flatten(&mut order);
    let (mut undone, mut failures, mut left) = (0, Vec::new(), 0);
    let mut items = Vec::new();
    for i in order {
        let item = replayed.item(i);
        let (covered, what) = match (&item.kind, lock(&exec.results[i]).take()) {
            (WayKind::Undo, Some(Undone::Done)) => {
                undone += 1;
                (true, if plan { "would undo" } else { "undone" }.to_string())
            }
            (WayKind::Undo, Some(Undone::Failed(why))) => {
                failures.push(format!("{}: {why}", item.step));
                (false, format!("failed: {why}"))
            }
            (WayKind::Undo, None) => (
                false,
                "not attempted: an undo before it in its lane failed".to_string(),
            ),
            (_, _) => {
                left += 1;
                (false, item.describe())
            }
        };
        items.push(json!({
            "step": item.step,
            "position": item.key,
            "undo": what,
            "recovered": covered,
        }));
    }
    ctx.declare_outcome(OUTCOME_TITLE, vec!["step".into(), "undo".into()], items)?;
    if !failures.is_empty() {
        return Ok(Err(script_error(
            format!(
                "{} of {} undos failed: {}",
                failures.len(),
                replayed.found.iter().filter(|f| f.undo.is_some()).count(),
                failures.join("; ")
            ),
            rhai::Position::NONE,
        )));
    }
    let result = json!({ "undo_of": original.id, "undone": undone, "left": left });
    Ok(Ok(rhai::serde::to_dynamic(result).unwrap_or(Dynamic::UNIT)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_are_undone_last_first_and_parallel_branches_side_by_side() {
        let keys = ["0", "2.0.1", "2.1.1", "2.1.0", "3", "2.0.3.1.0"];
        let mut items: Vec<(Vec<u64>, usize)> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (segments(k), i))
            .collect();
        items.sort();
        let limits = HashMap::from([(vec![2], 4), (vec![2, 0, 3], 2)]);
        let tree = Node::lane(0, &items, &limits);
        let mut order = Vec::new();
        tree.flatten(&mut order);
        let order: Vec<&str> = order.into_iter().map(|i| keys[i]).collect();
        assert_eq!(order, ["3", "2.1.1", "2.1.0", "2.0.3.1.0", "2.0.1", "0"]);
        match tree {
            Node::Lane(nodes) => match &nodes[1] {
                Node::Parallel { limit, branches } => {
                    assert_eq!((*limit, branches.len()), (4, 2))
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }
}
