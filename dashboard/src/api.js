// Everything the console reads and writes. Reads go to Supabase as the signed-in user (RLS
// decides what comes back); sends and read receipts go to our send function.
import { createClient } from "@supabase/supabase-js";

const config = window.CONSOLE_CONFIG || {};
export const supabase = createClient(config.supabaseUrl, config.supabaseAnonKey, {
  auth: { persistSession: true, autoRefreshToken: true },
});

const CONVERSATION_COLUMNS = [
  "id", "advisor_id", "customer_phone", "customer_name", "ai_attention", "human_override_until",
  "ai_disabled_at", "handoff_reason", "handoff_summary", "needs_human", "status", "opted_out_at",
  "last_inbound_at", "last_message_at", "last_message_preview", "unread_count", "updated_at",
].join(",");
const MESSAGE_COLUMNS = [
  "id", "conversation_id", "direction", "author", "body", "media", "transcript", "status",
  "error_code", "error_message", "created_at", "updated_at",
].join(",");
export const SERVICE_WINDOW_MS = 24 * 3600 * 1000;

function check({ data, error }) {
  if (error) throw error;
  return data;
}

// Who the user is in their tenant, and the advisors they may follow: tenant admins and
// supervisors follow every advisor; an advisor follows their own line (RLS agrees).
export async function loadProfile(user) {
  const members = check(
    await supabase.from("tenant_members").select("tenant_id,role").eq("user_id", user.id),
  );
  const member = members[0] || { role: "advisor", tenant_id: null };
  const staff = member.role === "admin" || member.role === "supervisor";
  let query = supabase.from("advisors").select("id,name,user_id,settings").order("name");
  if (!staff) query = query.eq("user_id", user.id);
  const advisors = check(await query);
  const tenants = member.tenant_id
    ? check(await supabase.from("tenants").select("id,name,settings").eq("id", member.tenant_id))
    : [];
  return { role: member.role, staff, advisors, tenant: tenants[0] || null };
}

export async function listConversations({ advisorIds, search, since }) {
  let query = supabase
    .from("conversations")
    .select(CONVERSATION_COLUMNS)
    .in("advisor_id", advisorIds)
    .order("last_message_at", { ascending: false, nullsFirst: false })
    .limit(100);
  const term = (search || "").replace(/[^\p{L}\p{N} +]/gu, "").trim();
  if (term) query = query.or(`customer_phone.ilike.*${term}*,customer_name.ilike.*${term}*`);
  if (since) query = query.gte("updated_at", since);
  return check(await query);
}

export async function listMessages(conversationId, since) {
  let query = supabase
    .from("messages")
    .select(MESSAGE_COLUMNS)
    .eq("conversation_id", conversationId)
    .order("created_at", { ascending: true })
    .limit(500);
  if (since) query = query.gte("updated_at", since);
  return check(await query);
}

export async function updateConversation(id, changes) {
  const rows = check(await supabase.from("conversations").update(changes).eq("id", id).select(CONVERSATION_COLUMNS));
  if (!rows.length) throw Object.assign(new Error("not found"), { status: 404 });
  return rows[0];
}

export const takeOver = (id) =>
  updateConversation(id, { ai_attention: false, needs_human: false, human_override_until: null });
export const resumeAi = (id) =>
  updateConversation(id, { ai_attention: true, ai_disabled_at: null, needs_human: false });
export const turnAiOff = (id) =>
  updateConversation(id, { ai_attention: false, needs_human: false, ai_disabled_at: new Date().toISOString() });

export async function metrics(from, to) {
  return check(await supabase.rpc("advisor_metrics", { p_from: from.toISOString(), p_to: to.toISOString() }));
}

export async function mediaUrl(path) {
  const { data, error } = await supabase.storage.from("whatsapp-media").createSignedUrl(path, 3600);
  if (error) throw error;
  return data.signedUrl;
}

// A failed call to the send function: the HTTP status and the function's error code.
export class SendError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
    this.body = body || {};
  }
}

async function callFunction(path, body, idempotencyKey) {
  const { data } = await supabase.auth.getSession();
  const token = data.session && data.session.access_token;
  const headers = { "Content-Type": "application/json", Authorization: `Bearer ${token}` };
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  let response;
  try {
    response = await fetch(`${config.functionsUrl}${path}`, {
      method: "POST",
      headers,
      body: JSON.stringify(body || {}),
    });
  } catch (err) {
    throw new SendError(0, { error: "network", detail: String(err) });
  }
  const payload = await response.json().catch(() => ({}));
  if (!response.ok) throw new SendError(response.status, payload);
  return payload;
}

// One key per message the advisor means to send: a retry of the same send reuses it, so the
// customer never gets it twice.
export function sendMessage(conversationId, content, idempotencyKey) {
  return callFunction("/messages", { conversation_id: conversationId, ...content }, idempotencyKey);
}

// A customer's data rights (tenant admins): everything of this number in the tenant.
export function exportCustomer(customerPhone, tenantId) {
  return callFunction("/customers/export", { customer_phone: customerPhone, tenant_id: tenantId });
}

export function eraseCustomer(customerPhone, tenantId) {
  return callFunction("/customers/erase", { customer_phone: customerPhone, tenant_id: tenantId });
}

export function markRead(conversationId) {
  return callFunction(`/conversations/${conversationId}/read`, {});
}

export function conversationState(c, now = Date.now()) {
  if (c.opted_out_at) return "opted_out";
  if (c.needs_human) return "needs_human";
  if (!c.ai_attention || c.ai_disabled_at) return "human";
  if (!c.last_inbound_at || now - Date.parse(c.last_inbound_at) > SERVICE_WINDOW_MS) return "outside_window";
  return "ai";
}

export function windowOpen(c, now = Date.now()) {
  return Boolean(c.last_inbound_at) && now - Date.parse(c.last_inbound_at) < SERVICE_WINDOW_MS;
}

export function templatesFor(profile, advisorId) {
  const advisor = profile.advisors.find((a) => a.id === advisorId);
  const own = (advisor && advisor.settings && advisor.settings.templates) || [];
  const shared = (profile.tenant && profile.tenant.settings && profile.tenant.settings.templates) || [];
  return [...own, ...shared];
}
