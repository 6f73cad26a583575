//! `lifeboat daemon`: holds the store, serves the control API, resumes the runs a crashed
//! process left behind (each once: only the process holding the store can), and starts the
//! scheduled plans and rehearsals. A schedule missed while the daemon was down is reported and
//! run once on restart, never silently skipped; a schedule does not start a second run of a
//! runbook still running unless it allows overlap. Reports go by email when configured.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::{format_time, Clock};
use crate::control::{self, Access, Service};
use crate::engine::mail_api::MailAccess;
use crate::engine::ovh_api::OvhAccess;
use crate::engine::{params, Engine, Limits, LiveRuns, RunOptions, Runbook};
use crate::error::Error;
use crate::journal::{Journal, Mode, RunId, RunState};
use crate::mail::MailConfig;
use crate::schedule::{Schedule, ScheduleMode};

struct Daemon {
    journal: Arc<Journal>,
    live: Arc<LiveRuns>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    runtime: tokio::runtime::Runtime,
    mail: MailConfig,
    links: Option<crate::mail::Linking>,
    /// Runbook path -> the run a schedule started and that is still going.
    running: Mutex<HashMap<String, RunId>>,
}

pub fn run(
    db: &crate::journal::Location,
    config_file: Option<&Path>,
    clock: Arc<dyn Clock>,
    limits: Limits,
) -> Result<u8, Error> {
    let default_config = crate::mail::default_config_path();
    let config = config_file.or(default_config.as_deref());
    let schedules = crate::schedule::load(config).map_err(|e| Error::Usage(e.to_string()))?;
    let mail = MailConfig::load(config, &|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .map_err(|e| Error::Usage(e.to_string()))?;
    let journal = Access::open_for_run(db)?;
    let links = super::gate_links(config_file, db, &clock)?;
    let daemon = Arc::new(Daemon {
        live: Arc::default(),
        journal,
        clock,
        limits,
        runtime: super::new_runtime()?,
        mail,
        links,
        running: Mutex::new(HashMap::new()),
    });
    let service = Arc::new(Service::new(
        daemon.journal.clone(),
        daemon.live.clone(),
        daemon.clock.clone(),
    ));
    control::serve(db, service)?;
    eprintln!(
        "lifeboat daemon: store {}, {} schedule(s)",
        db.describe(),
        schedules.len()
    );

    // Runs left behind by a process that died: resumed once each.
    for run in daemon.journal.runs()? {
        if matches!(run.state, RunState::Running { .. }) {
            eprintln!(
                "resuming run {} ({}), left behind by a stopped process",
                run.id, run.runbook.name
            );
            let d = daemon.clone();
            std::thread::spawn(move || d.execute(&run.id, run.mode, None, None));
        }
    }

    let mut last: HashMap<String, u64> = HashMap::new();
    let now = daemon.clock.now();
    for s in &schedules {
        let stored = daemon
            .journal
            .meta(&format!("schedule:{}", s.spec.name))?
            .and_then(|v| v.parse().ok());
        last.insert(s.spec.name.clone(), stored.unwrap_or(now));
    }
    // Check a few times per second of engine time, at most every 500 ms of real time.
    let tick = daemon
        .clock
        .real_duration(1000)
        .clamp(Duration::from_millis(2), Duration::from_millis(500));
    loop {
        let now = daemon.clock.now();
        for s in &schedules {
            let after = last[&s.spec.name];
            let (count, latest) = s.due(after, now);
            let Some(latest) = latest else { continue };
            // Daemons on several hosts share a store: each occurrence goes to one of them.
            let occurrence = format!("occurrence:{}:{latest}", s.spec.name);
            if !daemon
                .journal
                .claim(&occurrence, &format!("daemon pid {}", std::process::id()))?
            {
                last.insert(s.spec.name.clone(), now);
                continue;
            }
            if count > 1 {
                eprintln!(
                    "schedule {}: missed {} occurrence(s) between {} and {} (the daemon was not running); running it once now",
                    s.spec.name,
                    count - 1,
                    format_time(after),
                    format_time(latest)
                );
            }
            last.insert(s.spec.name.clone(), now);
            daemon
                .journal
                .set_meta(&format!("schedule:{}", s.spec.name), &now.to_string())?;
            daemon.clone().fire(s.clone(), latest);
        }
        std::thread::sleep(tick);
    }
}

impl Daemon {
    /// Starts a scheduled run in its own thread.
    fn fire(self: Arc<Self>, s: Schedule, due: u64) {
        let name = s.spec.name.clone();
        if !s.spec.allow_overlap {
            if let Some(previous) = self
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&s.spec.runbook)
            {
                eprintln!("schedule {name}: skipped the occurrence of {}: run {previous} of {} is still going", format_time(due), s.spec.runbook);
                return;
            }
        }
        let created = Runbook::load(&s.spec.runbook, &self.limits)
            .map_err(Error::from)
            .and_then(|rb| Ok((params::resolve(&rb.declaration.params, &s.params())?, rb)))
            .and_then(|(values, rb)| {
                let mode = if s.spec.mode == ScheduleMode::Plan {
                    Mode::Plan
                } else {
                    Mode::Normal
                };
                let engine = self.engine(mode, s.spec.twin.as_deref(), s.spec.speed)?;
                Ok(engine.create(&rb, values, vec!["all".into()], mode)?)
            });
        let id = match created {
            Ok(id) => id,
            Err(e) => {
                eprintln!("schedule {name}: could not start {}: {e}", s.spec.runbook);
                return;
            }
        };
        eprintln!(
            "schedule {name}: started run {id} ({}, due {})",
            s.spec.runbook,
            format_time(due)
        );
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(s.spec.runbook.clone(), id.clone());
        std::thread::spawn(move || {
            let mode = if s.spec.mode == ScheduleMode::Plan {
                Mode::Plan
            } else {
                Mode::Normal
            };
            self.execute(&id, mode, s.spec.twin.as_deref(), s.spec.speed);
            self.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&s.spec.runbook);
        });
    }

    /// An engine over the shared store: against the real account, or a twin's simulator.
    fn engine(&self, mode: Mode, twin: Option<&str>, speed: Option<f64>) -> Result<Engine, Error> {
        let client = match (mode, twin) {
            (Mode::Normal, Some(twin)) => {
                let fixture =
                    crate::sim::Sim::load_fixture(twin).map_err(|e| Error::Usage(e.to_string()))?;
                let (_sim, client) =
                    super::demo::start_sim(&self.runtime, fixture, speed.unwrap_or(60.0))?;
                Ok(client)
            }
            _ => crate::ovh::Config::from_environment(&Default::default())
                .map_err(|e| e.to_string())
                .and_then(|c| {
                    crate::ovh::Client::new(c, super::client_options()?)
                        .map(Arc::new)
                        .map_err(|e| e.to_string())
                }),
        };
        let observer = crate::mail::notifier::Notifier::wrap(
            Arc::new(super::output::Progress::new()),
            self.mail.clone(),
            self.runtime.handle().clone(),
            self.links.clone(),
        );
        Ok(Engine::new(
            self.journal.clone(),
            self.clock.clone(),
            observer,
            self.limits,
        )
        .with_live(self.live.clone())
        .with_ovh(OvhAccess {
            client,
            runtime: self.runtime.handle().clone(),
        })
        .with_mail(MailAccess {
            config: Ok(self.mail.clone()),
            runtime: self.runtime.handle().clone(),
        }))
    }

    /// Executes (or resumes) a run to its end, then mails its report when configured.
    fn execute(&self, id: &RunId, mode: Mode, twin: Option<&str>, speed: Option<f64>) {
        let engine = match self.engine(mode, twin, speed) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("run {id}: {e}");
                return;
            }
        };
        // Nobody answers a prompt in a daemon: a gate pauses the run (`lifeboat approve`, then
        // `lifeboat resume`).
        match engine.execute(
            id,
            None,
            RunOptions {
                no_wait: true,
                // On a shared store, a run another process drives is left to it.
                claim_only: true,
                ..RunOptions::default()
            },
        ) {
            Ok(outcome) => eprint!("{}", super::output::outcome(id, &outcome)),
            Err(crate::engine::Error::Journal(crate::journal::Error::Leased { .. })) => return,
            Err(e) => eprintln!("run {id}: {e}"),
        }
        self.mail_report(id);
    }

    fn mail_report(&self, id: &RunId) {
        let (Some(smtp), false) = (&self.mail.smtp, self.mail.notify.to.is_empty()) else {
            return;
        };
        let Ok(run) = self.journal.run(id) else {
            return;
        };
        let Ok(events) = self.journal.events(id) else {
            return;
        };
        let Ok(report) = crate::report::build(&run, &events) else {
            return;
        };
        let msg = crate::mail::notify::Outgoing {
            to: self.mail.notify.to.clone(),
            subject: format!(
                "[lifeboat] report of run {id}: {} {}",
                report.runbook, report.state
            ),
            body: crate::report::markdown(&report),
            message_id: None,
        };
        if let Err(e) = self.runtime.block_on(crate::mail::notify::send(smtp, &msg)) {
            eprintln!("warning: report of run {id} not sent: {e}");
        }
    }
}
