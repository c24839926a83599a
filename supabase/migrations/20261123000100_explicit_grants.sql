-- Explicit grants: what the API roles may do with our tables, and nothing else.
--
-- Supabase no longer grants new tables in public to anon, authenticated and service_role
-- (new projects since 2026-05-30, every project since 2026-10-30); older projects still hold
-- the old automatic `grant all`. So every table starts from nothing for every API role, then
-- gets exactly what the dashboards and tenant admins use; row-level security still decides
-- which rows. No API role keeps TRIGGER, TRUNCATE, REFERENCES (or MAINTAIN): those bypass RLS.
-- (Applied migrations are never edited; tables created from here on carry their grants in
-- the file that creates them.)

revoke all on public.tenants, public.tenant_members, public.advisors, public.conversations,
  public.messages, public.ai_runs, public.unrouted_messages, public.early_status_callbacks,
  public.send_requests
  from anon, authenticated, service_role;

-- tenants: members read their tenant; admins rename it and set its retention.
grant select, update (name, retention_days) on public.tenants to authenticated;

-- tenant_members: members read; admins add, change the role of, and remove members.
grant select, insert (tenant_id, user_id, role), update (role), delete
  on public.tenant_members to authenticated;

-- advisors: read; admins add, change and remove their tenant's advisors.
grant select,
  insert (tenant_id, user_id, name, phone_number, twilio_phone_number, is_active, settings),
  update (user_id, name, phone_number, twilio_phone_number, is_active, settings),
  delete
  on public.advisors to authenticated;

-- conversations: read; take over, return to the AI, and the inbox fields.
grant select,
  update (ai_attention, human_override_until, ai_disabled_at, audio_available, status,
    unread_count, needs_human)
  on public.conversations to authenticated;

-- messages and AI runs are written by the functions only; dashboards read them.
grant select on public.messages, public.ai_runs to authenticated;

-- unrouted_messages, early_status_callbacks, send_requests: no API role at all.

-- Functions written before this migration without a fixed search_path.
alter function private.touch_updated_at() set search_path = '';
alter function private.status_rank(text) set search_path = '';
alter function private.message_json(public.messages) set search_path = '';

-- Private functions created after the schema-wide revoke (the realtime trigger function) were
-- left executable by PUBLIC; only the policies' visibility helpers are for dashboards.
revoke all on all functions in schema private from public, anon, authenticated;
grant execute on function private.visible_advisor_ids(), private.staff_tenant_ids(),
  private.member_tenant_ids(), private.admin_tenant_ids() to authenticated;
