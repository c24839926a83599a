-- Handoff alerts to the advisor's own WhatsApp, and what became of each.
--
-- The alert is a message the business starts, so WhatsApp takes free text only while the
-- advisor's 24-hour window is open (the advisor wrote to their Twilio number in the last 24
-- hours: that thread is a conversation of theirs like any other). Outside it only an approved
-- template goes through; without one the alert is not sent, and the row says why.

create table public.advisor_alerts (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  advisor_id uuid not null references public.advisors (id) on delete cascade,
  -- The customer's conversation that needs the advisor.
  conversation_id uuid not null references public.conversations (id) on delete cascade,
  reason text,
  channel text not null check (channel in ('template', 'text', 'none')),
  provider_sid text,
  status text not null check (status in ('queued', 'sent', 'failed', 'skipped')),
  error_code integer,
  error_message text,
  created_at timestamptz not null default now()
);
comment on table public.advisor_alerts is
  'WhatsApp alerts to advisors on handoff: by template, free text (inside the window) or none.';
create index advisor_alerts_advisor_idx on public.advisor_alerts (advisor_id, created_at desc);
create index advisor_alerts_conversation_idx on public.advisor_alerts (conversation_id);
create index advisor_alerts_tenant_created_idx on public.advisor_alerts (tenant_id, created_at);
alter table public.advisor_alerts enable row level security;
revoke all on public.advisor_alerts from anon, authenticated, service_role;
grant select on public.advisor_alerts to authenticated;
create policy "alerts of visible advisors are readable" on public.advisor_alerts
  for select to authenticated using (advisor_id in (select private.visible_advisor_ids()));

-- Is the advisor's 24-hour window open (they wrote to their Twilio number since)?
create or replace function public.advisor_window_open(p_advisor_id uuid) returns boolean
language sql stable security definer set search_path = '' as $$
  select coalesce((
    select c.last_inbound_at > now() - interval '24 hours'
    from public.advisors a
    join public.conversations c on c.advisor_id = a.id
      and c.customer_phone = replace(a.phone_number, 'whatsapp:', '')
    where a.id = p_advisor_id), false)
$$;

create or replace function public.record_advisor_alert(
  p_conversation_id uuid, p_reason text, p_channel text, p_provider_sid text, p_status text,
  p_error_code integer default null, p_error_message text default null
) returns uuid
language sql security definer set search_path = '' as $$
  insert into public.advisor_alerts (tenant_id, advisor_id, conversation_id, reason, channel,
    provider_sid, status, error_code, error_message)
  select c.tenant_id, c.advisor_id, c.id, left(p_reason, 500), p_channel, p_provider_sid,
    p_status, p_error_code, left(p_error_message, 500)
  from public.conversations c where c.id = p_conversation_id
  returning id
$$;

-- Retention: alerts go with the rest of a tenant's history.
create or replace function public.purge_advisor_alerts(
  p_tenant_id uuid, p_cutoff timestamptz, p_limit integer
) returns integer
language sql security definer set search_path = '' as $$
  with doomed as (
    select id from public.advisor_alerts
    where tenant_id = p_tenant_id and created_at < p_cutoff limit p_limit
  ),
  deleted as (delete from public.advisor_alerts x using doomed where x.id = doomed.id returning 1)
  select count(*)::integer from deleted
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.advisor_window_open(uuid)',
    'public.record_advisor_alert(uuid, text, text, text, text, integer, text)',
    'public.purge_advisor_alerts(uuid, timestamptz, integer)'
  ] loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to assistant_functions, service_role', f);
  end loop;
end
$$;
