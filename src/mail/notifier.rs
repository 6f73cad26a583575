//! Built-in notifications: an [`Observer`] that emails responders when a run waits for them
//! (with the exact `lifeboat approve` command), when a step fails, and when a run ends. It
//! wraps the observer that prints progress, and never fails a run: a notification that cannot
//! be sent is reported as a warning.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::{Observer, Outcome, Progress};
use crate::journal::{PauseReason, RunId};

use super::notify::{send, Outgoing};
use super::{Linking, MailConfig, NotifyOn};

pub struct Notifier {
    inner: Arc<dyn Observer>,
    config: MailConfig,
    runtime: tokio::runtime::Handle,
    /// With the war room's links: each recipient of a gate email gets one of their own.
    links: Option<Linking>,
}

impl Notifier {
    /// `inner` unless notifications are configured (an SMTP server, recipients, events).
    pub fn wrap(
        inner: Arc<dyn Observer>,
        config: MailConfig,
        runtime: tokio::runtime::Handle,
        links: Option<Linking>,
    ) -> Arc<dyn Observer> {
        if config.smtp.is_none() || config.notify.to.is_empty() || config.notify.on.is_empty() {
            return inner;
        }
        Arc::new(Notifier {
            inner,
            config,
            runtime,
            links,
        })
    }

    fn send(&self, on: NotifyOn, subject: String, body: String) {
        if self.config.notify.on.contains(&on) {
            self.send_to(self.config.notify.to.clone(), subject, body);
        }
    }

    /// A gate email: with the war room's links, one message per recipient, each with the link
    /// that is theirs; else one message to all.
    fn send_gate(&self, run: &RunId, gate: &str, subject: String, body: String) {
        if !self.config.notify.on.contains(&NotifyOn::Approval) {
            return;
        }
        let Some((links, clock)) = &self.links else {
            return self.send_to(self.config.notify.to.clone(), subject, body);
        };
        let lifetime = crate::clock::format_duration(links.lifetime().as_millis() as u64);
        for to in &self.config.notify.to {
            let link = links.link(run, gate, to, clock.now());
            let body = format!("{body}\nOr open the war room at this link, which is yours alone ({to}): it lets you approve gate {gate} or abort the run, once, for the next {lifetime}:\n\n    {link}\n");
            self.send_to(vec![to.clone()], subject.clone(), body);
        }
    }

    fn send_to(&self, to: Vec<String>, subject: String, body: String) {
        let Some(smtp) = &self.config.smtp else {
            return;
        };
        let msg = Outgoing {
            to,
            subject,
            body,
            message_id: None,
        };
        let sent = self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), send(smtp, &msg)).await
        });
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: notification not sent: {e}"),
            Err(_) => eprintln!(
                "warning: notification not sent: the SMTP server did not answer within 30 s"
            ),
        }
    }
}

impl Observer for Notifier {
    fn progress(&self, run: &RunId, p: Progress<'_>) {
        match &p {
            Progress::WaitingApproval { gate, message, needed, have } => self.send_gate(
                run,
                gate,
                format!("[lifeboat] run {run} waits for approval at gate {gate}"),
                format!("{message}\n\n{}To approve, from any terminal on the machine running it:\n\n    lifeboat approve {run} {gate}\n\nTo stop the run for good:\n\n    lifeboat abort {run}\n", crate::journal::approvers_text(*needed, *have).map(|t| format!("{t}.\n\n")).unwrap_or_default()),
            ),
            Progress::StepFailed { name, attempts, error } => self.send(
                NotifyOn::Failure,
                format!("[lifeboat] run {run}: step {name:?} failed"),
                format!("Step {name:?} failed after {attempts} attempt(s):\n\n{error}\n\nJournal: lifeboat log {run}\n"),
            ),
            Progress::Finished { outcome: Some(Outcome::Paused(PauseReason::Approval { gate })) } => self.send_gate(
                run,
                gate,
                format!("[lifeboat] run {run} waits for approval at gate {gate}"),
                format!("The run stopped at gate {gate} (--no-wait).\n\nTo approve, then continue it:\n\n    lifeboat approve {run} {gate}\n    lifeboat resume {run}\n\nTo stop the run for good:\n\n    lifeboat abort {run}\n"),
            ),
            Progress::Finished { outcome: Some(outcome) } => {
                let (state, detail) = match outcome {
                    Outcome::Succeeded { result, verdict } | Outcome::AlreadySucceeded { result, verdict } if verdict.is_partial() => (
                        verdict.state(),
                        format!("Not everything was recovered ({}):\n\n{}\n\nReport: lifeboat report {run}\n\nResult:\n{result:#}\n", verdict.summary(), verdict.shortfall.iter().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")),
                    ),
                    Outcome::Succeeded { result, .. } | Outcome::AlreadySucceeded { result, .. } => ("succeeded", format!("Result:\n{result:#}\n")),
                    Outcome::Failed { error } => ("failed", format!("{error}\n\nAfter fixing the cause: lifeboat resume {run}\n")),
                    Outcome::Aborted { by } => ("was aborted", format!("Aborted by {by}.\n")),
                    Outcome::Paused(reason) => ("paused", format!("{reason:?}\n\nlifeboat status {run}\n")),
                };
                self.send(
                    NotifyOn::Finish,
                    format!("[lifeboat] run {run} {state}"),
                    format!("Run {run} {state}.\n\n{detail}\nSteps and timings: lifeboat status {run}\n"),
                );
            }
            _ => {}
        }
        self.inner.progress(run, p);
    }
}
