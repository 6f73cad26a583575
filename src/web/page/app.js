// The war room page. Everything the API answers is put on the page with textContent or
// attributes, never as HTML: a step name or a log line is text, whatever it contains.
"use strict";

const state = { me: null, source: null, page: null, fetchedAt: 0, rows: [] };

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function duration(ms) {
  const neg = ms < 0;
  let s = Math.floor(Math.abs(ms) / 1000);
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const text = h ? `${h}h ${String(m).padStart(2, "0")}m ${String(s).padStart(2, "0")}s`
    : m ? `${m}m ${String(s).padStart(2, "0")}s` : `${s}s`;
  return neg ? "-" + text : text;
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

const FINAL = ["succeeded", "partial", "failed", "aborted"];

// The RTO clock of a run: time left, or overrun; it ticks on the page between updates.
function rtoClock(run, fetchedAt) {
  const ticking = !FINAL.includes(run.state) && run.state !== "queued";
  const extra = ticking ? Date.now() - fetchedAt : 0;
  const elapsed = run.elapsed_ms + extra;
  if (run.rto_left_ms === undefined || run.rto_left_ms === null) {
    return el("span", { class: "clock", "data-clock": "", text: `${duration(elapsed)} (no RTO)` });
  }
  const left = run.rto_left_ms - extra;
  if (FINAL.includes(run.state)) {
    const rto = duration(run.rto_secs * 1000);
    return left >= 0
      ? el("span", { class: "clock left", "data-clock": "", text: `took ${duration(elapsed)}, within its RTO (${rto})` })
      : el("span", { class: "clock over", "data-clock": "", text: `took ${duration(elapsed)}: RTO (${rto}) missed by ${duration(-left)}` });
  }
  return left >= 0
    ? el("span", { class: "clock left", "data-clock": "", text: `${duration(left)} left of the RTO` })
    : el("span", { class: "clock over", "data-clock": "", text: `RTO overrun by ${duration(-left)}` });
}

async function api(path, options) {
  const o = Object.assign({ headers: {} }, options || {});
  if (o.body !== undefined) {
    o.headers["Content-Type"] = "application/json";
    o.body = JSON.stringify(o.body);
  }
  if (state.me && state.me.csrf && o.method && o.method !== "GET") {
    o.headers["X-Lifeboat-CSRF"] = state.me.csrf;
  }
  const r = await fetch(path, o);
  let data = null;
  try { data = await r.json(); } catch (_) { data = null; }
  if (!r.ok) {
    const err = new Error((data && data.error) || `${r.status} ${r.statusText}`);
    err.status = r.status;
    throw err;
  }
  return data;
}

function main(...children) {
  const m = document.getElementById("main");
  m.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
  return m;
}

function stopLive() {
  if (state.source) { state.source.close(); state.source = null; }
}

function live(path, event, onData) {
  stopLive();
  const source = new EventSource(path);
  source.addEventListener(event, (e) => onData(JSON.parse(e.data)));
  source.addEventListener("error", (e) => {
    if (e.data) {
      main(el("p", { class: "error", text: e.data }));
      source.close();
    }
  });
  state.source = source;
}

// ----- sign-in -----

function showLogin(message) {
  stopLive();
  document.getElementById("who").textContent = "";
  document.getElementById("logout").hidden = true;
  const input = el("input", { id: "token", type: "password", autocomplete: "current-password",
    placeholder: "lbt_…", required: true });
  const error = el("p", { class: "error", id: "login-error", role: "alert", text: message || "" });
  const form = el("form", { class: "card", id: "login" },
    el("h1", { text: "Sign in" }),
    el("p", { class: "quiet", text: "With the token `lifeboat token` made for you." }),
    input, error,
    el("div", { class: "buttons" }, el("button", { class: "primary", type: "submit", text: "Sign in" })));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      state.me = await api("/api/login", { method: "POST", body: { token: input.value } });
      route();
    } catch (err) {
      error.textContent = err.message;
    }
  });
  main(form);
  input.focus();
}

function showMe() {
  document.getElementById("who").textContent = `${state.me.name} (${state.me.role})`;
  document.getElementById("logout").hidden = false;
}

// ----- the runs -----

function runRow(r, fetchedAt) {
  return el("a", { class: "card run-row", href: `#/run/${encodeURIComponent(r.id)}`, "data-run": r.id },
    el("span", {}, el("span", { class: `badge s-${r.state}`, text: r.state })),
    el("span", {},
      el("strong", { text: r.runbook }), " ",
      el("span", { class: "quiet", text: r.id }),
      r.waiting_gate ? el("div", { class: "quiet", text: `waits at gate ${r.waiting_gate}` }) : null,
      r.driver ? el("div", { class: "quiet", text: `driven by ${r.driver}` }) : null),
    el("span", { class: "quiet started", text: when(r.created_at) }),
    el("span", {}, rtoClock(r, fetchedAt)));
}

function showRuns() {
  document.title = "lifeboat war room";
  const list = el("div", { class: "runs", id: "runs" }, el("p", { class: "quiet", text: "loading…" }));
  main(el("h1", { text: "Runs" }), list);
  live("/api/live", "runs", (rows) => {
    state.rows = rows;
    state.fetchedAt = Date.now();
    list.replaceChildren(...(rows.length
      ? rows.map((r) => runRow(r, state.fetchedAt))
      : [el("p", { class: "quiet", text: "No runs in this store yet." })]));
  });
}

// ----- one run -----

function confirmAction(title, text, action) {
  const dialog = document.getElementById("confirm");
  const reason = document.getElementById("reason");
  const error = document.getElementById("confirm-error");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  reason.value = "";
  error.textContent = "";
  const ok = document.getElementById("confirm-ok");
  const onOk = async (e) => {
    e.preventDefault();
    if (!reason.value.trim()) { error.textContent = "Say why: it is journaled with your name."; return; }
    try {
      const done = await action(reason.value.trim());
      dialog.close();
      flash(done.message);
    } catch (err) {
      error.textContent = err.message;
    }
  };
  ok.onclick = onOk;
  dialog.showModal();
  reason.focus();
}

// What an action did, above the (re-rendered) page until the next view.
function flash(message) {
  const f = document.getElementById("flash");
  f.textContent = message || "";
  f.hidden = !message;
}

function gateCard(page, g) {
  const mayAct = state.me && state.me.role !== "viewer";
  const id = page.run.id;
  const approvals = g.approved_by.length
    ? `${g.approved_by.length} of ${g.approvers} approvals: ${g.approved_by.join(", ")}`
    : `${g.approvers} ${g.approvers === 1 ? "person" : "different people"} must approve`;
  return el("div", { class: "card gate", "data-gate": g.gate },
    el("h3", { text: `Gate ${g.gate}` }),
    el("p", { class: "message", text: g.message || "(no message)" }),
    el("p", { class: "quiet", text: `${approvals}. Operators and admins may approve. Waiting since ${when(g.opened_at)}.` }),
    mayAct ? el("div", { class: "buttons" },
      el("button", { class: "primary approve", onclick: () => confirmAction(
        `Approve gate ${g.gate}?`, `Run ${id} goes on once ${g.approvers} different people approved.`,
        (reason) => api(`/api/runs/${encodeURIComponent(id)}/gates/${encodeURIComponent(g.gate)}/approve`,
          { method: "POST", body: { reason } })), text: "Approve" }),
      el("button", { class: "danger abort", onclick: () => confirmAction(
        `Abort run ${id}?`, "The run stops for good; its journal stays.",
        (reason) => api(`/api/runs/${encodeURIComponent(id)}/abort`, { method: "POST", body: { reason } })),
        text: "Abort the run" }))
      : el("p", { class: "quiet", text: "You are a viewer: an operator approves." }));
}

// What a person must decide before the run can go on: a step in doubt, or the failed step.
const CHOICES = {
  done: ["It happened", "primary", "The step's change did happen: the run goes on past it."],
  not_done: ["It did not happen", "", "The step's change did not happen: it runs again."],
  retry: ["Run it again", "", "The step runs again, on your responsibility."],
};

function decideCard(page) {
  const d = page.decide;
  const id = encodeURIComponent(page.run.id);
  const mayAct = state.me && state.me.role !== "viewer";
  return el("div", { class: "card gate", id: "decide", "data-decide": d.name },
    el("h3", { text: `Step ${d.name} needs a decision` }),
    el("p", { class: "message", text: d.why }),
    mayAct ? el("div", { class: "buttons" }, ...d.choices.map((c) => el("button", {
      class: CHOICES[c][1], "data-decision": c, text: CHOICES[c][0],
      onclick: () => confirmAction(`${CHOICES[c][0]}: step ${d.name}?`, CHOICES[c][2],
        (reason) => api(`/api/runs/${id}/steps/${encodeURIComponent(d.key)}/decide`,
          { method: "POST", body: { decision: c, reason } })),
    }))) : el("p", { class: "quiet", text: "You are a viewer: an operator decides." }));
}

function timeline(page) {
  const steps = page.steps;
  const starts = steps.map((s) => s.started_at).filter(Boolean);
  const t0 = starts.length ? Math.min(...starts) : 0;
  const now = FINAL.includes(page.run.state) ? page.run.updated_at : page.run.created_at + page.run.elapsed_ms;
  const span = Math.max(1, now - t0);
  const lanes = new Map();
  for (const s of steps) {
    if (!lanes.has(s.lane)) lanes.set(s.lane, []);
    lanes.get(s.lane).push(s);
  }
  const out = el("div", { id: "timeline" });
  for (const [lane, items] of lanes) {
    const box = el("div", { class: "lane", "data-lane": lane || "main" },
      el("div", { class: "lane-name", text: lane ? `lane ${lane}` : "main lane" }));
    for (const s of items) {
      const mark = { succeeded: "✓", failed: "✗", running: "…", "retry-wait": "↻", "in-doubt": "?" }[s.state]
        || (s.kind === "gate" ? "‖" : "·");
      const meta = [s.attempts > 1 ? `${s.attempts} attempts` : "",
        s.duration_ms !== undefined ? duration(s.duration_ms) : ""].filter(Boolean).join(", ");
      const bar = el("div", { class: "bar" });
      if (s.started_at) {
        const end = s.finished_at || now;
        const i = el("span", { class: "fill" });
        i.style.left = `${(100 * (s.started_at - t0)) / span}%`;
        i.style.width = `${Math.max(0.5, (100 * (end - s.started_at)) / span)}%`;
        bar.append(i);
      }
      box.append(el("div", { class: "step", "data-step": s.name, "data-state": s.state, "data-kind": s.kind },
        el("span", { text: mark }),
        el("span", { class: "name" }, el("span", { text: s.name }), " ",
          el("span", { class: "quiet state", text: s.state })),
        el("span", { class: "meta", text: meta }),
        bar,
        s.error ? el("span", { class: "err", text: s.error }) : null));
    }
    out.append(box);
  }
  return out;
}

function logView(page, filterText) {
  const lines = page.log.filter((l) => !filterText || l.text.toLowerCase().includes(filterText.toLowerCase()));
  return el("div", { class: "card log", id: "log" },
    ...lines.map((l) => el("div", { "data-seq": l.seq },
      el("time", { text: new Date(l.at).toLocaleTimeString() }), el("span", { text: l.text }))));
}

function renderRun(page) {
  state.page = page;
  state.fetchedAt = Date.now();
  const r = page.run;
  document.title = `${r.runbook} ${r.state} · lifeboat`;
  const filter = document.getElementById("log-filter");
  const filterText = filter ? filter.value : "";
  const id = encodeURIComponent(r.id);
  const waiting = page.gates.filter((g) => g.waiting);
  const params = Object.entries(page.params);
  const input = el("input", { id: "log-filter", type: "search", placeholder: "filter the log", value: filterText });
  input.addEventListener("input", () => {
    document.getElementById("log").replaceWith(logView(state.page, input.value));
  });
  const admin = state.me && state.me.role === "admin";
  main(
    el("p", {}, el("a", { href: "#/", text: "← all runs" })),
    el("h1", {}, el("span", { class: `badge s-${r.state}`, id: "run-state", text: r.state }), " ",
      el("span", { text: r.runbook })),
    el("div", { class: "card facts" },
      el("div", {}, el("span", { text: "run" }), r.id),
      el("div", {}, el("span", { text: "clock" }), rtoClock(r, state.fetchedAt)),
      el("div", {}, el("span", { text: "started" }), when(r.created_at)),
      el("div", {}, el("span", { text: "state" }), el("span", { id: "run-detail", text: r.detail })),
      r.driver ? el("div", {}, el("span", { text: "driven by" }), r.driver) : null,
      r.plan ? el("div", {}, el("span", { text: "mode" }), "plan (nothing is changed)") : null,
      r.undo_of ? el("div", {}, el("span", { text: "undo of" }), r.undo_of) : null),
    ...page.task_waits.map((t) => el("p", { class: "card quiet", text: t })),
    waiting.length ? el("h2", { text: "Waiting for a person" }) : null,
    ...waiting.map((g) => gateCard(page, g)),
    page.decide ? el("h2", { text: "Waiting for a decision" }) : null,
    page.decide ? decideCard(page) : null,
    !FINAL.includes(r.state) && !waiting.length && state.me && state.me.role !== "viewer"
      ? el("div", { class: "buttons" }, el("button", { class: "danger abort", onclick: () => confirmAction(
        `Abort run ${r.id}?`, "The run stops for good; its journal stays.",
        (reason) => api(`/api/runs/${id}/abort`, { method: "POST", body: { reason } })), text: "Abort the run" }))
      : null,
    el("h2", { text: "Timeline" }),
    timeline(page),
    el("h2", { text: "Parameters" }),
    params.length ? el("table", { class: "card", id: "params" },
      ...params.map(([k, v]) => el("tr", {}, el("th", { text: k }),
        el("td", { text: typeof v === "string" ? v : JSON.stringify(v) }))))
      : el("p", { class: "quiet", text: "none" }),
    el("h2", { text: "Log" }),
    input,
    logView(page, filterText),
    el("h2", { text: "Downloads" }),
    el("p", { class: "downloads" },
      el("a", { href: `/api/runs/${id}/report?format=html`, text: "report (HTML)" }),
      el("a", { href: `/api/runs/${id}/report?format=md`, text: "report (Markdown)" }),
      el("a", { href: `/api/runs/${id}/report?format=json`, text: "report (JSON)" }),
      admin ? el("a", { href: `/api/runs/${id}/export`, text: "export (JSON)" }) : null));
}

function showRun(id) {
  main(el("p", { class: "quiet", text: "loading…" }));
  live(`/api/runs/${encodeURIComponent(id)}/live`, "run", renderRun);
}

// ----- an emailed approval link: the ticket is the credential -----

async function showLink(ticket) {
  stopLive();
  let view;
  try {
    view = await api(`/api/link?t=${encodeURIComponent(ticket)}`);
  } catch (err) {
    main(el("h1", { text: "Approval link" }), el("p", { class: "error", id: "link-error", text: err.message }));
    return;
  }
  const g = view.gate;
  const r = view.run;
  document.title = `gate ${g.gate} · lifeboat`;
  const approvals = g.approved_by.length
    ? `${g.approved_by.length} of ${g.approvers} approvals: ${g.approved_by.join(", ")}`
    : `${g.approvers} ${g.approvers === 1 ? "person" : "different people"} must approve`;
  const act = (what) => (reason) => api(`/api/link/${what}`, { method: "POST", body: { ticket, reason } })
    .then((done) => { setTimeout(() => showLink(ticket), 0); return done; });
  const open = g.waiting && !view.spent;
  main(
    el("h1", {}, el("span", { class: `badge s-${r.state}`, id: "run-state", text: r.state }), " ",
      el("span", { text: r.runbook })),
    el("div", { class: "card facts" },
      el("div", {}, el("span", { text: "run" }), r.id),
      el("div", {}, el("span", { text: "clock" }), rtoClock(r, Date.now())),
      el("div", {}, el("span", { text: "link for" }), view.to),
      el("div", {}, el("span", { text: "works until" }), when(view.expires_at))),
    el("div", { class: "card gate", "data-gate": g.gate },
      el("h3", { text: `Gate ${g.gate}` }),
      el("p", { class: "message", text: g.message || "(no message)" }),
      el("p", { class: "quiet", id: "link-state", text: view.spent
        ? `You used this link already. ${approvals}.`
        : g.waiting ? `${approvals}.` : `This gate is no longer waiting. ${approvals}.` }),
      open ? el("div", { class: "buttons" },
        el("button", { class: "primary approve", text: "Approve", onclick: () => confirmAction(
          `Approve gate ${g.gate}?`, `As ${view.to}; this link then stops working.`, act("approve")) }),
        el("button", { class: "danger abort", text: "Abort the run", onclick: () => confirmAction(
          `Abort run ${r.id}?`, "The run stops for good; its journal stays.", act("abort")) }))
        : null),
    el("p", { class: "quiet", text: "To see the whole run, sign in to the war room." }));
}

// ----- routing -----

async function route() {
  flash("");
  const link = location.hash.match(/^#\/link\/(.+)$/);
  if (link) return showLink(decodeURIComponent(link[1]));
  if (!state.me) {
    try {
      state.me = await api("/api/me");
    } catch (err) {
      showLogin(err.status === 401 ? "" : err.message);
      return;
    }
  }
  showMe();
  const m = location.hash.match(/^#\/run\/(.+)$/);
  if (m) showRun(decodeURIComponent(m[1]));
  else showRuns();
}

// The clocks tick between updates.
setInterval(() => {
  const clocks = document.querySelectorAll("[data-clock]");
  if (!clocks.length) return;
  if (state.page && location.hash.startsWith("#/run/")) {
    const c = rtoClock(state.page.run, state.fetchedAt);
    clocks.forEach((old) => old.replaceWith(c.cloneNode(true)));
  } else if (state.rows.length) {
    document.querySelectorAll("[data-run]").forEach((a) => {
      const r = state.rows.find((x) => x.id === a.getAttribute("data-run"));
      const old = a.querySelector("[data-clock]");
      if (r && old) old.replaceWith(rtoClock(r, state.fetchedAt));
    });
  }
}, 1000);

document.getElementById("logout").addEventListener("click", async () => {
  await api("/api/logout", { method: "POST" }).catch(() => {});
  state.me = null;
  showLogin("Signed out.");
});
document.getElementById("confirm-cancel").addEventListener("click", () => {
  document.getElementById("confirm").close();
});
window.addEventListener("hashchange", route);
route();
