// The advisor console: sign in, inbox, one conversation, actions, metrics. State lives here;
// api.js talks to Supabase and the send function; live.js keeps the page current.
import * as api from "./api.js";
import { h, time } from "./dom.js";
import { getLanguage, setLanguage, t } from "./i18n.js";
import { follow } from "./live.js";

const root = document.getElementById("app");
const state = {
  session: null,
  profile: null,
  conversations: new Map(),
  messages: new Map(),
  selected: null,
  view: "inbox",
  search: "",
  advisorFilter: "",
  lastSeen: null, // the newest updated_at this page has seen
  // Where the next catch-up starts: lastSeen when the page was last known to be in step (after
  // the first fetch, or when the connection dropped). Broadcasts that arrive after a rejoin but
  // before the catch-up's fetch move lastSeen, not this.
  catchUpFrom: undefined,
  online: false, // until every channel is joined: the indicator shows the page is not live yet
  error: null,
  notice: null, // what the last admin action did
  draft: "", // the composer's text survives re-renders (a broadcast may arrive while typing)
  templateDraft: { index: "0", values: {} }, // and so do the template form's choice and values
  pendingSend: null, // { key, content }: a send to retry with the same Idempotency-Key
  unfollow: null,
};

// Timestamps arrive in the offset of whichever database session wrote them: compare instants.
function seen(iso) {
  const at = iso ? Date.parse(iso) : NaN;
  if (!Number.isNaN(at) && (state.lastSeen === null || at > state.lastSeen)) state.lastSeen = at;
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---------------------------------------------------------------------------------------------
// Sign in / out

function renderLogin(message) {
  const email = h("input", { type: "email", id: "email", testid: "login-email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", id: "password", testid: "login-password", autocomplete: "current-password", required: true });
  const error = h("p", { className: "error", role: "alert", testid: "login-error" }, message || "");
  const form = h("form", { className: "login", onsubmit: async (event) => {
    event.preventDefault();
    error.textContent = "";
    const { error: failed } = await api.supabase.auth.signInWithPassword({ email: email.value, password: password.value });
    if (failed) error.textContent = t("signInFailed");
  } },
    h("h1", {}, t("title")),
    h("label", { for: "email" }, t("email")), email,
    h("label", { for: "password" }, t("password")), password,
    h("button", { type: "submit", testid: "login-submit" }, t("signIn")),
    error,
  );
  root.replaceChildren(form);
  email.focus();
}

api.supabase.auth.onAuthStateChange((event, session) => {
  // Supabase calls back while holding its auth lock: do the work after it returns.
  setTimeout(() => {
    if (session && !state.session) start(session);
    else if (session) state.session = session;
    else if (!session && state.session) stop();
    else if (!session) renderLogin();
  }, 0);
});

async function start(session) {
  state.session = session;
  try {
    state.profile = await api.loadProfile(session.user);
  } catch (err) {
    state.session = null;
    renderLogin(t("err_other"));
    return;
  }
  const own = state.profile.advisors.find((a) => a.user_id === session.user.id);
  setLanguage((own && own.settings && own.settings.language) || "es");
  render();
  await refreshInbox();
  state.catchUpFrom = state.lastSeen;
  const ids = state.profile.advisors.map((a) => a.id);
  state.unfollow = follow(ids, session.access_token, { onChange: applyChange, onOnline: setOnline });
}

function stop() {
  if (state.unfollow) state.unfollow();
  Object.assign(state, { session: null, profile: null, selected: null, lastSeen: null, catchUpFrom: undefined, unfollow: null });
  state.conversations.clear();
  state.messages.clear();
  renderLogin();
}

// ---------------------------------------------------------------------------------------------
// Data in

function followedIds() {
  const ids = state.profile.advisors.map((a) => a.id);
  return state.advisorFilter ? ids.filter((id) => id === state.advisorFilter) : ids;
}

async function refreshInbox() {
  const rows = await api.listConversations({ advisorIds: followedIds(), search: state.search });
  state.conversations = new Map(rows.map((c) => [c.id, c]));
  rows.forEach((c) => seen(c.updated_at));
  render();
}

async function openConversation(id) {
  state.selected = id;
  state.error = null;
  state.pendingSend = null;
  state.draft = "";
  state.messages.clear();
  render();
  const rows = await api.listMessages(id);
  if (state.selected !== id) return;
  rows.forEach((m) => { state.messages.set(m.id, m); seen(m.updated_at); });
  render();
}

// A broadcast from the database: { table, operation, record, old_record }.
function applyChange(change) {
  const row = change && change.record;
  if (!row) return;
  seen(row.updated_at);
  if (change.table === "conversations") {
    state.conversations.set(row.id, { ...(state.conversations.get(row.id) || {}), ...row });
  } else if (change.table === "messages" && row.conversation_id === state.selected) {
    state.messages.set(row.id, row);
  }
  render();
}

// A row's updated_at is when its transaction started: one still open when the page was last in
// step commits later with an earlier time. The catch-up reaches back this far before that point.
const CATCH_UP_MARGIN_MS = 60_000;

// Every time the channels are (re)joined, fetch what changed since the page was last in step:
// after a drop, and also after the first join (rows written between the first fetch and the
// subscription). A row fetched twice is merged by id, never lost.
async function setOnline(online) {
  state.online = online;
  render();
  if (!online) {
    if (state.catchUpFrom === undefined) state.catchUpFrom = state.lastSeen;
    return;
  }
  const from = state.catchUpFrom === undefined ? state.lastSeen : state.catchUpFrom;
  const since = from === null ? null : new Date(from - CATCH_UP_MARGIN_MS).toISOString();
  const conversations = await api.listConversations({ advisorIds: followedIds(), search: state.search, since });
  conversations.forEach((c) => applyChange({ table: "conversations", record: c }));
  if (state.selected) {
    const messages = await api.listMessages(state.selected, since);
    messages.forEach((m) => applyChange({ table: "messages", record: m }));
  }
  if (state.online) state.catchUpFrom = undefined; // in step again (unless it dropped meanwhile)
}

// ---------------------------------------------------------------------------------------------
// Actions

function errorText(err) {
  const status = err && err.status;
  if (status === 0) return t("err_network");
  if (status === 409 && err.code === "request_in_progress") return t("err_409_progress");
  if (status === 502) {
    const code = err.body && err.body.twilio_code ? ` (${err.body.twilio_code})` : "";
    return `${t("err_502")}${code}: ${err.message}`;
  }
  if ([401, 403, 404, 409, 422, 429, 503].includes(status)) return t(`err_${status}`);
  if (err && err.code === "42501") return t("err_403");
  return `${t("err_other")}: ${(err && err.message) || err}`;
}

// The customer's data as one JSON file the admin's browser saves (or Storage's link, when large).
async function exportCustomer(c) {
  const data = await api.exportCustomer(c.customer_phone, state.profile.tenant && state.profile.tenant.id);
  const link = document.createElement("a");
  link.href = data.url || URL.createObjectURL(new Blob([JSON.stringify(data, null, 2)], { type: "application/json" }));
  link.download = `customer-${c.customer_phone.replace(/\D/g, "")}.json`;
  link.click();
  state.notice = t("exported");
}

async function eraseCustomer(c) {
  if (!window.confirm(t("eraseConfirm").replace("{phone}", c.customer_phone))) return;
  await act(async () => {
    const result = await api.eraseCustomer(c.customer_phone, state.profile.tenant && state.profile.tenant.id);
    for (const [id, other] of state.conversations) if (other.customer_phone === c.customer_phone) state.conversations.delete(id);
    state.selected = null;
    state.messages.clear();
    state.notice = `${t("erased")} (${result.counts.messages} ${t("messagesWord")})`;
  });
}

async function act(work) {
  state.error = null;
  state.notice = null;
  try {
    const updated = await work();
    if (updated && updated.id) applyChange({ table: "conversations", record: updated });
    render();
    return true;
  } catch (err) {
    state.error = errorText(err);
    if (err && err.status === 401) await api.supabase.auth.refreshSession();
    render();
    return false;
  }
}

async function send(content) {
  const conversationId = state.selected;
  // The same content retried keeps its key (the function answers a replay with the first result).
  const same = state.pendingSend && JSON.stringify(state.pendingSend.content) === JSON.stringify(content);
  const key = same ? state.pendingSend.key : newKey();
  state.pendingSend = { key, content };
  const ok = await act(async () => {
    try {
      await api.sendMessage(conversationId, content, key);
    } catch (err) {
      // Only a send that may not have happened keeps its key for the retry.
      if (![0, 409, 503].includes(err.status)) state.pendingSend = null;
      throw err;
    }
  });
  if (ok) state.pendingSend = null;
  return ok;
}

// ---------------------------------------------------------------------------------------------
// Rendering

function render() {
  if (!state.session || !state.profile) return;
  const selected = state.conversations.get(state.selected);
  const focused = document.activeElement && document.activeElement.dataset.testid;
  root.replaceChildren(
    h("div", { className: `shell${selected ? " has-selection" : ""}` },
      header(),
      state.view === "metrics" ? metricsView() : [inbox(), conversationView(selected)],
    ),
  );
  const again = focused && root.querySelector(`[data-testid="${focused}"]`);
  if (again && again.tagName !== "BUTTON") again.focus();
}

function header() {
  return h("header", {},
    h("strong", {}, t("title")),
    h("nav", {},
      h("button", { type: "button", testid: "inbox-tab", "aria-pressed": String(state.view === "inbox"), onclick: () => { state.view = "inbox"; render(); } }, t("inbox")),
      h("button", { type: "button", testid: "metrics-tab", "aria-pressed": String(state.view === "metrics"), onclick: () => { state.view = "metrics"; render(); } }, t("metrics")),
    ),
    state.online ? null : h("span", { className: "offline", role: "status", testid: "offline-indicator" }, t("offline")),
    h("select", { "aria-label": "Language", testid: "language", onchange: (e) => { setLanguage(e.target.value); render(); } },
      ["es", "en"].map((code) => h("option", { value: code, selected: code === getLanguage() }, code.toUpperCase())),
    ),
    h("span", { className: "who" }, state.session.user.email),
    h("button", { type: "button", testid: "sign-out", onclick: () => api.supabase.auth.signOut() }, t("signOut")),
  );
}

function inbox() {
  const search = h("input", { type: "search", testid: "search", placeholder: t("search"), "aria-label": t("search"), value: state.search });
  search.addEventListener("input", () => { state.search = search.value; });
  search.addEventListener("change", () => refreshInbox());
  const rows = [...state.conversations.values()].sort((a, b) => (b.last_message_at || "").localeCompare(a.last_message_at || ""));
  const advisorName = (id) => (state.profile.advisors.find((a) => a.id === id) || {}).name || "";
  return h("section", { className: "inbox", "aria-label": t("inbox") },
    h("div", { className: "filters" },
      search,
      state.profile.staff
        ? h("select", { testid: "advisor-filter", "aria-label": t("allAdvisors"), onchange: (e) => { state.advisorFilter = e.target.value; refreshInbox(); } },
            h("option", { value: "" }, t("allAdvisors")),
            state.profile.advisors.map((a) => h("option", { value: a.id, selected: a.id === state.advisorFilter }, a.name)))
        : null,
    ),
    rows.length ? h("ul", {}, rows.map((c) => {
      const chip = api.conversationState(c);
      return h("li", {},
        h("button", { type: "button", className: `item${c.id === state.selected ? " selected" : ""}`, testid: "conversation-item", "data-conversation-id": c.id, onclick: () => openConversation(c.id) },
          h("span", { className: "name" }, c.customer_name || c.customer_phone),
          c.unread_count ? h("span", { className: "badge", testid: "unread-badge" }, c.unread_count) : null,
          h("span", { className: `chip ${chip}`, testid: "conversation-state", "data-state": chip }, t(`state_${chip}`)),
          h("span", { className: "phone" }, c.customer_phone),
          state.profile.staff ? h("span", { className: "advisor" }, advisorName(c.advisor_id)) : null,
          h("span", { className: "preview" }, c.last_message_preview || ""),
          h("time", {}, time(c.last_message_at, getLanguage())),
        ));
    })) : h("p", { className: "empty" }, t("noConversations")),
  );
}

function conversationView(c) {
  if (!c) return h("section", { className: "conversation empty" },
    state.notice ? h("p", { className: "notice", role: "status", testid: "notice" }, state.notice) : null,
    h("p", {}, t("pickConversation")));
  const chip = api.conversationState(c);
  const paused = !c.ai_attention || c.ai_disabled_at;
  const messages = [...state.messages.values()].sort((a, b) => a.created_at.localeCompare(b.created_at));
  const list = h("ol", { className: "messages", "aria-live": "polite" }, messages.map(messageView));
  requestAnimationFrame(() => { list.scrollTop = list.scrollHeight; });
  return h("section", { className: "conversation", "aria-label": c.customer_name || c.customer_phone, testid: "conversation", "data-conversation-id": c.id },
    h("div", { className: "head" },
      h("button", { type: "button", className: "back", onclick: () => { state.selected = null; render(); } }, `← ${t("back")}`),
      h("h2", {}, c.customer_name || c.customer_phone, " ", h("small", {}, c.customer_phone)),
      h("span", { className: `chip ${chip}`, testid: "conversation-state", "data-state": chip }, t(`state_${chip}`)),
    ),
    c.handoff_reason || c.handoff_summary ? h("dl", { className: "handoff", testid: "handoff" },
      c.handoff_reason ? [h("dt", {}, t("handoffReason")), h("dd", {}, c.handoff_reason)] : null,
      c.handoff_summary ? [h("dt", {}, t("handoffSummary")), h("dd", {}, c.handoff_summary)] : null,
    ) : null,
    h("div", { className: "actions" },
      paused ? null : h("button", { type: "button", testid: "takeover-button", onclick: () => act(() => api.takeOver(c.id)) }, t("takeOver")),
      paused ? h("button", { type: "button", testid: "resume-ai-button", onclick: () => act(() => api.resumeAi(c.id)) }, t("resumeAi")) : null,
      c.ai_disabled_at ? null : h("button", { type: "button", testid: "ai-off-button", onclick: () => act(() => api.turnAiOff(c.id)) }, t("aiOff")),
      h("button", { type: "button", testid: "mark-read-button", disabled: !c.unread_count, onclick: () => act(() => api.markRead(c.id)) }, t("markRead")),
      state.profile.role === "admin" ? [
        h("button", { type: "button", testid: "export-customer-button", onclick: () => act(() => exportCustomer(c)) }, t("exportCustomer")),
        h("button", { type: "button", className: "danger", testid: "erase-customer-button", onclick: () => eraseCustomer(c) }, t("eraseCustomer")),
      ] : null,
    ),
    state.notice ? h("p", { className: "notice", role: "status", testid: "notice" }, state.notice) : null,
    list,
    state.error ? h("p", { className: "error", role: "alert", testid: "error" }, state.error,
      state.pendingSend ? h("button", { type: "button", testid: "retry-button", onclick: () => send(state.pendingSend.content) }, t("retry")) : null) : null,
    api.windowOpen(c) ? composer() : templatePicker(c),
  );
}

function messageView(m) {
  const ticks = { sent: "✓", delivered: "✓✓", read: "✓✓" }[m.status] || "";
  const failed = m.status === "failed" || m.status === "undelivered";
  return h("li", { className: `message ${m.author}${m.status === "read" ? " read" : ""}`, testid: "message", "data-author": m.author, "data-status": m.status, "data-message-id": m.id },
    h("span", { className: "author" }, t(`author_${m.author}`)),
    m.body ? h("p", { className: "body" }, m.body) : null,
    (m.media || []).map(mediaView),
    m.transcript ? h("p", { className: "transcript" }, h("em", {}, `${t("transcript")}: `), m.transcript) : null,
    h("span", { className: "meta" },
      h("time", {}, time(m.created_at, getLanguage())),
      m.direction === "outbound" ? h("span", { className: "ticks", title: t(`status_${m.status}`) }, ticks || t(`status_${m.status}`)) : null,
      failed ? h("span", { className: "failure", testid: "failure" }, `${t(`status_${m.status}`)}${m.error_code ? ` (${m.error_code})` : ""}${m.error_message ? `: ${m.error_message}` : ""}`) : null,
    ),
  );
}

function mediaView(item) {
  if (item.type === "template") return h("p", { className: "template" }, `${t("template")}: ${item.content_sid}`);
  if (!item.path) return item.url ? h("a", { href: item.url, target: "_blank", rel: "noopener" }, item.content_type || item.url) : null;
  const kind = (item.content_type || "").split("/")[0];
  const el = kind === "image" ? h("img", { alt: item.content_type, testid: "media-image" })
    : kind === "audio" ? h("audio", { controls: true, testid: "media-audio" })
    : h("a", { target: "_blank", rel: "noopener", testid: "media-link" }, item.content_type);
  api.mediaUrl(item.path).then((url) => { el[kind === "image" || kind === "audio" ? "src" : "href"] = url; }, () => {});
  return el;
}

function composer() {
  const text = h("textarea", { testid: "composer", rows: 2, placeholder: t("composer"), "aria-label": t("composer") });
  text.value = state.draft;
  text.addEventListener("input", () => { state.draft = text.value; });
  const submit = async () => {
    const body = state.draft.trim();
    if (!body) return;
    if (await send({ body })) { state.draft = ""; render(); }
  };
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); submit(); }
  });
  return h("form", { className: "composer", onsubmit: (event) => { event.preventDefault(); submit(); } },
    text, h("button", { type: "submit", testid: "send-button" }, t("send")));
}

function templatePicker(c) {
  const templates = api.templatesFor(state.profile, c.advisor_id);
  if (!templates.length) return h("p", { className: "notice", testid: "window-closed" }, `${t("windowClosed")} ${t("noTemplates")}`);
  const select = h("select", { testid: "template-select", "aria-label": t("template") },
    templates.map((tpl, i) => h("option", { value: i }, tpl.name)));
  const draft = state.templateDraft;
  select.value = templates[Number(draft.index)] ? draft.index : "0";
  const fields = h("div", { className: "variables" });
  const showFields = () => {
    const tpl = templates[Number(select.value)];
    const names = Array.isArray(tpl.variables) ? tpl.variables : Object.keys(tpl.variables || {});
    fields.replaceChildren(...names.map((name) => {
      const input = h("input", { "data-variable": name, placeholder: `{{${name}}}`, "aria-label": `{{${name}}}` });
      input.value = state.templateDraft.values[name] || "";
      input.addEventListener("input", () => { state.templateDraft.values[name] = input.value; });
      return input;
    }));
  };
  select.addEventListener("change", () => { state.templateDraft = { index: select.value, values: {} }; showFields(); });
  showFields();
  return h("form", { className: "composer template", onsubmit: async (event) => {
    event.preventDefault();
    const tpl = templates[Number(select.value)];
    const variables = Object.fromEntries([...fields.querySelectorAll("input")].map((i) => [i.dataset.variable, i.value]));
    if (await send({ template: { content_sid: tpl.content_sid, variables } })) {
      state.templateDraft = { index: "0", values: {} };
      render();
    }
  } },
    h("p", { className: "notice", testid: "window-closed" }, t("windowClosed")),
    select, fields, h("button", { type: "submit", testid: "send-template-button" }, t("sendTemplate")));
}

function metricsView() {
  const panel = h("section", { className: "metrics", testid: "metrics-panel", "aria-label": t("metrics") }, h("p", {}, "…"));
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  const now = new Date(Date.now() + 60_000);
  const weekAgo = new Date(midnight.getTime() - 6 * 86400_000);
  Promise.all([api.metrics(midnight, now), api.metrics(weekAgo, now)]).then(([today, week]) => {
    panel.replaceChildren(metricsTable(t("today"), today, "today"), metricsTable(t("last7"), week, "week"));
  }, (err) => panel.replaceChildren(h("p", { className: "error", role: "alert" }, errorText(err))));
  return panel;
}

function metricsTable(title, rows, range) {
  const columns = [
    ["advisor_name", "m_advisor"], ["inbound_messages", "m_inbound"], ["conversations", "m_conversations"],
    ["ai_only_share", "m_aiOnly"], ["handoffs", "m_handoffs"], ["median_first_response_seconds", "m_median"],
    ["failed_sends", "m_failed"],
  ];
  const format = (key, value) => {
    if (value === null || value === undefined) return "–";
    if (key === "ai_only_share") return `${Math.round(Number(value) * 100)} %`;
    if (key === "median_first_response_seconds") return `${Math.round(Number(value))} s`;
    return value;
  };
  return h("table", { testid: `metrics-${range}` },
    h("caption", {}, title),
    h("thead", {}, h("tr", {}, columns.map(([, label]) => h("th", { scope: "col" }, t(label))))),
    h("tbody", {}, rows.map((row) => h("tr", { "data-advisor-id": row.advisor_id },
      columns.map(([key]) => h("td", { "data-metric": key }, format(key, row[key])))))),
  );
}

if (!window.CONSOLE_CONFIG) root.textContent = "config.js is missing: see README (Advisor console).";
