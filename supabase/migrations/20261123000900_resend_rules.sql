-- Resends obey the rules of a first send, and the parts of one reply go out in order or not at
-- all.
--
-- * reply_id ties together the messages one commit_reply wrote (the parts of a long reply, a
--   voice note after its text). A part is resent only once every earlier part was sent; when
--   an earlier part failed for good, the later parts are canceled.
-- * 'canceled': we decided not to send it (opt-out, inactive advisor, outside the 24-hour
--   window, too old, an earlier part lost). Never retried; the reason is in error_message.
-- (commit_reply, which writes reply_id, is redefined in 20261123001600_knowledge.sql.)

alter table public.messages add column if not exists reply_id uuid;
comment on column public.messages.reply_id is
  'Outbound: the reply (one commit) this message is part of; parts go out in created_at order.';
create index if not exists messages_reply_idx on public.messages (reply_id, created_at)
  where reply_id is not null;
-- The sweep's candidates now include 'sending' rows a dead run left behind.
drop index if exists public.messages_retry_idx;
create index if not exists messages_unsent_idx on public.messages (created_at)
  where direction = 'outbound' and provider_sid is null and status in ('queued', 'sending', 'failed');

alter table public.messages drop constraint messages_status_check;
alter table public.messages add constraint messages_status_check check (status in (
  'received', 'queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'undelivered',
  'canceled')) not valid;
alter table public.messages validate constraint messages_status_check;

create or replace function private.status_rank(status text) returns integer
language sql immutable set search_path = '' as $$
  select case status
    when 'received' then 0
    when 'queued' then 1
    when 'sending' then 2
    when 'sent' then 3
    when 'failed' then 4
    when 'undelivered' then 4
    when 'canceled' then 4
    when 'delivered' then 5
    when 'read' then 6
    else -1
  end
$$;

-- Why an unsent outbound message may no longer be sent, or null. The same rules as a first
-- send: the customer did not opt out after it was written (the opt-out confirmation is written
-- after the STOP, so it still goes), the advisor is active, free-form text only inside the
-- 24-hour window, and nothing older than p_max_age (a late answer is worse than none).
create or replace function private.send_refusal(
  m public.messages, c public.conversations, advisor_active boolean, p_max_age interval
) returns text
language sql stable set search_path = '' as $$
  select case
    when not advisor_active then 'advisor inactive'
    when c.opted_out_at is not null and m.created_at < c.opted_out_at then 'customer opted out'
    when m.created_at < now() - p_max_age then 'too old to send'
    when not m.media @> '[{"type": "template"}]'
      and (c.last_inbound_at is null or c.last_inbound_at < now() - interval '24 hours')
      then 'outside the 24-hour window'
  end
$$;
revoke all on function private.send_refusal(public.messages, public.conversations, boolean, interval)
  from public, anon, authenticated;

-- Outbound messages to (re)send, claimed one reply part at a time (moved to 'sending', attempt
-- counted) so overlapping runs never send one row. Candidates: queued and never sent, failed
-- with a retryable code (or unknown: error_code null) after exponential backoff, and 'sending'
-- rows a dead run left behind (the sweep asks Twilio before sending those again). Rows that
-- may no longer be sent are canceled here. Returns {rows: [...], canceled: n}.
drop function public.claim_resends(integer, interval, integer, integer[], interval);
create function public.claim_resends(
  p_limit integer, p_min_age interval, p_max_age interval, p_max_attempts integer,
  p_retry_codes integer[], p_backoff interval
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  r record;
  v_claimed uuid[] := '{}';
  v_before jsonb := '{}';
  v_canceled integer := 0;
  v_result jsonb;
begin
  for r in
    select m.id, m.status, m.error_code,
      private.send_refusal(m, c, a.is_active, p_max_age) as refusal,
      coalesce(earlier.waiting, false) as waiting, coalesce(earlier.lost, false) as lost
    from public.messages m
    join public.conversations c on c.id = m.conversation_id
    join public.advisors a on a.id = m.advisor_id
    left join lateral (
      select
        bool_or(e.status in ('queued', 'sending') or (e.status = 'failed'
          and (e.error_code is null or e.error_code = any(p_retry_codes))
          and e.attempts < p_max_attempts)) as waiting,
        bool_or(e.status = 'canceled' or (e.status = 'failed'
          and ((e.error_code is not null and e.error_code <> all(p_retry_codes))
            or e.attempts >= p_max_attempts))) as lost
      from public.messages e
      where e.reply_id = m.reply_id and e.created_at < m.created_at and e.provider_sid is null
    ) earlier on true
    where m.direction = 'outbound' and m.provider_sid is null
      and (
        (m.status in ('queued', 'sending') and m.updated_at < now() - p_min_age)
        or (m.status = 'failed' and m.attempts < p_max_attempts
            and (m.error_code is null or m.error_code = any(p_retry_codes))
            and m.updated_at < now() - p_backoff * power(2, greatest(m.attempts - 1, 0)))
      )
      -- A queued row past the attempt limit is a later part that never got its turn.
      and (m.attempts < p_max_attempts or m.status in ('queued', 'sending'))
    order by m.created_at
    limit p_limit * 4
    for update of m skip locked
  loop
    if r.refusal is not null or r.lost then
      update public.messages set status = 'canceled', error_code = null,
        error_message = 'not sent: ' || coalesce(r.refusal, 'an earlier part of the reply was not sent')
      where id = r.id;
      v_canceled := v_canceled + 1;
    elsif not r.waiting and cardinality(v_claimed) < p_limit then
      update public.messages set status = 'sending', attempts = attempts + 1 where id = r.id;
      v_claimed := v_claimed || r.id;
      v_before := v_before || jsonb_build_object(r.id::text,
        jsonb_build_object('status', r.status, 'error_code', r.error_code));
    end if;
  end loop;

  select coalesce(jsonb_agg(jsonb_build_object(
    'message_id', m.id, 'body', m.body, 'media', m.media, 'attempts', m.attempts,
    'created_at', m.created_at,
    'status_before', v_before -> m.id::text ->> 'status',
    'error_code_before', (v_before -> m.id::text ->> 'error_code')::integer,
    'customer_phone', c.customer_phone, 'twilio_phone_number', a.twilio_phone_number,
    -- sids already ours in this conversation since the row was written: a message Twilio's
    -- list shows with one of these is another row's, not this one.
    'known_sids', (select coalesce(jsonb_agg(o.provider_sid), '[]'::jsonb) from public.messages o
                   where o.conversation_id = m.conversation_id and o.direction = 'outbound'
                     and o.provider_sid is not null
                     and o.created_at > m.created_at - interval '1 minute'))
    order by m.created_at), '[]'::jsonb)
  into v_result
  from public.messages m
  join public.conversations c on c.id = m.conversation_id
  join public.advisors a on a.id = m.advisor_id
  where m.id = any(v_claimed);
  return jsonb_build_object('rows', v_result, 'canceled', v_canceled);
end
$$;

revoke all on function public.claim_resends(integer, interval, interval, integer, integer[], interval)
  from public, anon, authenticated;
grant execute on function public.claim_resends(integer, interval, interval, integer, integer[], interval)
  to assistant_functions, service_role;

-- What a dry run would resend (the same candidates claim_resends looks at).
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
      and provider_sid is null
      and ((status in ('queued', 'sending') and updated_at < now() - p_min_age)
        or (status = 'failed' and attempts < p_max_attempts
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
