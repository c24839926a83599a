-- The cleanup function's sweeps: recovery of unanswered turns and unsent messages, handoff
-- expiry, and retention. Each function works on a bounded batch and claims rows by changing
-- their state under `for update skip locked`, so overlapping runs never take the same row.

alter table public.messages add column if not exists lease_until timestamptz;
comment on column public.messages.lease_until is
  'Inbound: a recovery run is answering this turn until then (overlapping runs skip it).';
create index if not exists ai_runs_tenant_created_idx on public.ai_runs (tenant_id, created_at);
create index if not exists messages_retry_idx on public.messages (status, updated_at)
  where direction = 'outbound' and status in ('queued', 'failed') and provider_sid is null;

-- Unanswered turns: inbound messages never handled (an instance died mid-request, or a turn
-- lost its lock), older than p_min_age so in-flight requests are left alone, and younger than
-- p_max_age: a late answer to an old message is worse than none (a human sees it unanswered). Leases every
-- unhandled message of the picked conversations and returns, per conversation, what the
-- webhook's answering code needs.
create or replace function public.claim_unanswered_turns(
  p_limit integer, p_min_age interval, p_max_age interval, p_lease interval,
  p_history_limit integer default 20
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_result jsonb;
begin
  with picked as (
    select m.id from public.messages m
    where m.direction = 'inbound' and m.handled_at is null
      and m.created_at < now() - p_min_age and m.created_at > now() - p_max_age
      and (m.lease_until is null or m.lease_until < now())
    order by m.created_at
    limit p_limit * 10
    for update skip locked
  ),
  leased as (
    update public.messages m set lease_until = now() + p_lease
    from picked where m.id = picked.id
    returning m.id, m.conversation_id, m.created_at
  ),
  turns as (
    select distinct on (conversation_id) conversation_id, id as message_id
    from leased order by conversation_id, created_at desc
    limit p_limit
  )
  select coalesce(jsonb_agg(jsonb_build_object(
    'conversation_id', c.id,
    'message_id', t.message_id,
    'customer_phone', c.customer_phone,
    'twilio_phone_number', a.twilio_phone_number,
    'audio_available', c.audio_available,
    'ai_allowed', a.is_active and c.ai_attention and c.ai_disabled_at is null
      and (c.human_override_until is null or c.human_override_until <= now())
      and c.opted_out_at is null,
    'history', (
      select coalesce(jsonb_agg(h.j order by h.created_at), '[]'::jsonb) from (
        select private.message_json(m) as j, m.created_at from public.messages m
        where m.conversation_id = c.id order by m.created_at desc limit p_history_limit) h)
  )), '[]'::jsonb) into v_result
  from turns t
  join public.conversations c on c.id = t.conversation_id
  join public.advisors a on a.id = c.advisor_id;
  return v_result;
end
$$;

-- Mark a conversation's unhandled inbound messages handled without answering (AI not allowed).
create or replace function public.mark_turn_handled(p_conversation_id uuid, p_up_to uuid)
returns void
language sql security definer set search_path = '' as $$
  update public.messages set handled_at = now()
  where conversation_id = p_conversation_id and direction = 'inbound' and handled_at is null
    and created_at <= (select created_at from public.messages where id = p_up_to)
$$;

-- Outbound messages to (re)send: queued and never sent, or failed with a retryable code,
-- under the attempt limit, after exponential backoff. Claimed by moving them to 'sending' and
-- counting the attempt, so no two runs send one row; a row left in 'sending' is never resent
-- blindly (it may have reached Twilio).
create or replace function public.claim_resends(
  p_limit integer, p_min_age interval, p_max_attempts integer, p_retry_codes integer[],
  p_backoff interval
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_result jsonb;
begin
  with picked as (
    select m.id from public.messages m
    where m.direction = 'outbound' and m.attempts < p_max_attempts
      and (
        -- queued with a sid is queued at Twilio: only rows Twilio never saw are ours to send
        (m.status = 'queued' and m.provider_sid is null and m.updated_at < now() - p_min_age)
        or (m.status = 'failed' and m.provider_sid is null
            and (m.error_code is null or m.error_code = any(p_retry_codes))
            and m.updated_at < now() - p_backoff * power(2, greatest(m.attempts - 1, 0)))
      )
    order by m.updated_at
    limit p_limit
    for update skip locked
  ),
  claimed as (
    update public.messages m set status = 'sending', attempts = m.attempts + 1
    from picked where m.id = picked.id
    returning m.*
  )
  select coalesce(jsonb_agg(jsonb_build_object(
    'message_id', cl.id, 'body', cl.body, 'media', cl.media, 'attempts', cl.attempts,
    'customer_phone', c.customer_phone, 'twilio_phone_number', a.twilio_phone_number)), '[]'::jsonb)
  into v_result
  from claimed cl
  join public.conversations c on c.id = cl.conversation_id
  join public.advisors a on a.id = cl.advisor_id;
  return v_result;
end
$$;

-- Result of a resend: the sid and status, or the failure (attempts were counted at claim time).
create or replace function public.finish_resend(
  p_message_id uuid, p_provider_sid text, p_status text, p_error_code integer,
  p_error_message text
) returns void
language sql security definer set search_path = '' as $$
  update public.messages set provider_sid = p_provider_sid, status = p_status,
    error_code = p_error_code, error_message = p_error_message
  where id = p_message_id and status = 'sending'
$$;

-- Human overrides that ran out give the conversation back to the AI, unless it was turned
-- off for good (ai_disabled_at).
create or replace function public.expire_handoffs(p_limit integer, p_dry_run boolean default false)
returns integer
language plpgsql security definer set search_path = '' as $$
declare
  v_count integer;
begin
  if p_dry_run then
    select count(*) into v_count from public.conversations
    where human_override_until <= now() and ai_disabled_at is null;
    return v_count;
  end if;
  with picked as (
    select id from public.conversations
    where human_override_until <= now() and ai_disabled_at is null
    limit p_limit for update skip locked
  )
  update public.conversations c set ai_attention = true, human_override_until = null
  from picked where c.id = picked.id;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

-- Retention cut-off per tenant: its own retention_days, else the deployment default.
create or replace function public.retention_cutoffs(p_default_days integer) returns jsonb
language sql stable security definer set search_path = '' as $$
  select coalesce(jsonb_agg(jsonb_build_object('tenant_id', id,
    'cutoff', now() - make_interval(days => coalesce(retention_days, p_default_days)))), '[]'::jsonb)
  from public.tenants
$$;

-- One batch of a tenant's old messages; returns how many went and the Storage paths of their media.
create or replace function public.purge_messages(p_tenant_id uuid, p_cutoff timestamptz, p_limit integer)
returns jsonb
language sql security definer set search_path = '' as $$
  with doomed as (
    select id from public.messages
    where tenant_id = p_tenant_id and created_at < p_cutoff
    order by created_at limit p_limit
    for update skip locked
  ),
  deleted as (
    delete from public.messages m using doomed where m.id = doomed.id returning m.media
  )
  select jsonb_build_object(
    'deleted', (select count(*) from deleted),
    'media_paths', (select coalesce(jsonb_agg(item ->> 'path'), '[]'::jsonb)
                    from deleted, jsonb_array_elements(deleted.media) item
                    where item ? 'path'))
$$;

create or replace function public.purge_ai_runs(p_tenant_id uuid, p_cutoff timestamptz, p_limit integer)
returns integer
language sql security definer set search_path = '' as $$
  with doomed as (
    select id from public.ai_runs
    where tenant_id = p_tenant_id and created_at < p_cutoff limit p_limit
  ),
  deleted as (delete from public.ai_runs r using doomed where r.id = doomed.id returning 1)
  select count(*)::integer from deleted
$$;

-- Rows that belong to no tenant: unrouted inbound, stale early callbacks and idempotency keys.
create or replace function public.purge_service_rows(p_cutoff timestamptz, p_limit integer)
returns integer
language plpgsql security definer set search_path = '' as $$
declare
  v_total integer := 0;
  v_count integer;
begin
  delete from public.unrouted_messages where id in (
    select id from public.unrouted_messages where created_at < p_cutoff limit p_limit);
  get diagnostics v_count = row_count;
  v_total := v_total + v_count;
  delete from public.early_status_callbacks where provider_sid in (
    select provider_sid from public.early_status_callbacks
    where received_at < now() - interval '7 days' limit p_limit);
  get diagnostics v_count = row_count;
  v_total := v_total + v_count;
  delete from public.send_requests where (user_id, idempotency_key) in (
    select user_id, idempotency_key from public.send_requests
    where created_at < now() - interval '2 days' limit p_limit);
  get diagnostics v_count = row_count;
  return v_total + v_count;
end
$$;

-- Conversations whose messages are all gone are closed, never deleted.
create or replace function public.close_empty_conversations(p_limit integer) returns integer
language sql security definer set search_path = '' as $$
  with closing as (
    select c.id from public.conversations c
    where c.status <> 'closed'
      and not exists (select 1 from public.messages m where m.conversation_id = c.id)
    limit p_limit
  ),
  closed as (
    update public.conversations c set status = 'closed', unread_count = 0
    from closing where c.id = closing.id returning 1
  )
  select count(*)::integer from closed
$$;

-- What a run would change, for ?dry_run=1.
create or replace function public.cleanup_preview(
  p_default_days integer, p_min_age interval, p_max_age interval, p_max_attempts integer,
  p_retry_codes integer[]
) returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object(
    'unanswered_turns', (select count(distinct conversation_id) from public.messages
      where direction = 'inbound' and handled_at is null and created_at < now() - p_min_age
        and created_at > now() - p_max_age),
    'resends', (select count(*) from public.messages where direction = 'outbound'
      and attempts < p_max_attempts
      and ((status = 'queued' and provider_sid is null and updated_at < now() - p_min_age)
        or (status = 'failed' and provider_sid is null
            and (error_code is null or error_code = any(p_retry_codes))))),
    'handoffs_expired', (select count(*) from public.conversations
      where human_override_until <= now() and ai_disabled_at is null),
    'messages', (select count(*) from public.messages m join public.tenants t on t.id = m.tenant_id
      where m.created_at < now() - make_interval(days => coalesce(t.retention_days, p_default_days))),
    'ai_runs', (select count(*) from public.ai_runs r join public.tenants t on t.id = r.tenant_id
      where r.created_at < now() - make_interval(days => coalesce(t.retention_days, p_default_days))),
    'unrouted', (select count(*) from public.unrouted_messages
      where created_at < now() - make_interval(days => p_default_days)))
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.claim_unanswered_turns(integer, interval, interval, interval, integer)',
    'public.mark_turn_handled(uuid, uuid)',
    'public.claim_resends(integer, interval, integer, integer[], interval)',
    'public.finish_resend(uuid, text, text, integer, text)',
    'public.expire_handoffs(integer, boolean)',
    'public.retention_cutoffs(integer)',
    'public.purge_messages(uuid, timestamptz, integer)',
    'public.purge_ai_runs(uuid, timestamptz, integer)',
    'public.purge_service_rows(timestamptz, integer)',
    'public.close_empty_conversations(integer)',
    'public.cleanup_preview(integer, interval, interval, integer, integer[])'
  ] loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to assistant_functions, service_role', f);
  end loop;
end
$$;
