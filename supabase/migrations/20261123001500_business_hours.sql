-- Business hours and checked replies.
--
-- A handoff outside the advisor's hours schedules the WhatsApp alert for the next opening
-- (advisor_alerts.status 'scheduled', send_after); the cleanup sweep sends the alerts that
-- are due. The alert carries the handoff summary. A model reply that fails the checks is
-- recorded as an AI run with outcome 'rejected'.

alter table public.ai_runs drop constraint ai_runs_outcome_check;
alter table public.ai_runs add constraint ai_runs_outcome_check
  check (outcome in ('replied', 'handoff', 'error', 'timeout', 'rejected')) not valid;
alter table public.ai_runs validate constraint ai_runs_outcome_check;

alter table public.advisor_alerts
  add column if not exists summary text,
  add column if not exists send_after timestamptz,
  -- When a sweep claimed it: a claim older than a run's budget is a run that died.
  add column if not exists claimed_at timestamptz;
alter table public.advisor_alerts drop constraint advisor_alerts_status_check;
alter table public.advisor_alerts add constraint advisor_alerts_status_check
  check (status in ('scheduled', 'queued', 'sent', 'failed', 'skipped')) not valid;
alter table public.advisor_alerts validate constraint advisor_alerts_status_check;
create index if not exists advisor_alerts_due_idx on public.advisor_alerts (send_after)
  where status in ('scheduled', 'queued');

drop function public.record_advisor_alert(uuid, text, text, text, text, integer, text);
create function public.record_advisor_alert(
  p_conversation_id uuid, p_reason text, p_summary text, p_channel text, p_provider_sid text,
  p_status text, p_error_code integer default null, p_error_message text default null,
  p_send_after timestamptz default null
) returns uuid
language sql security definer set search_path = '' as $$
  insert into public.advisor_alerts (tenant_id, advisor_id, conversation_id, reason, summary,
    channel, provider_sid, status, error_code, error_message, send_after)
  select c.tenant_id, c.advisor_id, c.id, left(p_reason, 500), left(p_summary, 2000), p_channel,
    p_provider_sid, p_status, p_error_code, left(p_error_message, 500), p_send_after
  from public.conversations c where c.id = p_conversation_id
  returning id
$$;

-- Scheduled alerts whose time came, claimed (status 'queued') so overlapping runs send each
-- once, and claims a dead run left behind (older than p_stale); with what sending needs.
create or replace function public.claim_due_alerts(
  p_limit integer, p_stale interval default interval '10 minutes'
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_result jsonb;
begin
  with picked as (
    select x.id from public.advisor_alerts x
    where (x.status = 'scheduled' and x.send_after <= now())
       or (x.status = 'queued' and x.claimed_at < now() - p_stale)
    order by x.send_after limit p_limit
    for update skip locked
  ),
  claimed as (
    update public.advisor_alerts x set status = 'queued', claimed_at = now()
    from picked where x.id = picked.id
    returning x.*
  )
  select coalesce(jsonb_agg(jsonb_build_object(
    'alert_id', cl.id, 'advisor_id', cl.advisor_id, 'reason', cl.reason, 'summary', cl.summary,
    'customer_phone', c.customer_phone, 'advisor_phone', a.phone_number,
    'twilio_phone_number', a.twilio_phone_number, 'settings', a.settings,
    'advisor_active', a.is_active)), '[]'::jsonb)
  into v_result
  from claimed cl
  join public.conversations c on c.id = cl.conversation_id
  join public.advisors a on a.id = cl.advisor_id;
  return v_result;
end
$$;

create or replace function public.finish_advisor_alert(
  p_alert_id uuid, p_channel text, p_provider_sid text, p_status text,
  p_error_code integer default null, p_error_message text default null
) returns void
language sql security definer set search_path = '' as $$
  update public.advisor_alerts set channel = p_channel, provider_sid = p_provider_sid,
    status = p_status, error_code = p_error_code, error_message = left(p_error_message, 500)
  where id = p_alert_id and status = 'queued'
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.record_advisor_alert(uuid, text, text, text, text, text, integer, text, timestamptz)',
    'public.claim_due_alerts(integer, interval)',
    'public.finish_advisor_alert(uuid, text, text, text, integer, text)'
  ] loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to assistant_functions, service_role', f);
  end loop;
end
$$;
