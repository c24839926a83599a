-- Resends obey the rules of a first send, and the parts of one reply go out in order or not at
-- all.
--
-- * reply_id ties together the messages one commit_reply wrote (the parts of a long reply, a
--   voice note after its text). A part is resent only once every earlier part was sent; when
--   an earlier part failed for good, the later parts are canceled.
-- * 'canceled': we decided not to send it (opt-out, inactive advisor, outside the 24-hour
--   window, too old, an earlier part lost). Never retried; the reason is in error_message.
-- * The conversation's last message time and preview follow every reply, media-only too.

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

-- commit_reply, now giving every reply a reply_id and keeping the conversation's last message
-- time and preview current for media-only replies (a voice note, a template).
create or replace function public.commit_reply(
  p_conversation_id uuid,
  p_seen uuid[],
  p_messages jsonb,
  p_ai_run jsonb default null,
  p_handoff jsonb default null,
  p_require_ai boolean default true
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_conv public.conversations;
  v_active boolean;
  v_newest uuid := p_seen[array_upper(p_seen, 1)];
  v_reply uuid := gen_random_uuid();
  v_ids jsonb;
  v_count integer;
  v_last text;
begin
  -- One commit at a time per conversation: the checks below and the writes see the same state.
  select c.* into v_conv from public.conversations c where c.id = p_conversation_id for update;
  if not found then
    raise exception 'unknown conversation %', p_conversation_id using errcode = 'P0002';
  end if;
  select a.is_active into v_active from public.advisors a where a.id = v_conv.advisor_id;

  if p_require_ai and not private.ai_may_answer(v_conv, v_active) then
    return jsonb_build_object('committed', false, 'reason', 'ai_not_allowed');
  end if;
  -- (Notices answer a message ingest already handled; the AI answers only unhandled turns.)
  if p_require_ai and v_newest is not null and exists (
    select 1 from public.messages m where m.id = v_newest and m.handled_at is not null
  ) then
    return jsonb_build_object('committed', false, 'reason', 'already_answered');
  end if;

  with inserted as (
    insert into public.messages (tenant_id, advisor_id, conversation_id, direction, author, body,
      media, status, reply_id)
    select v_conv.tenant_id, v_conv.advisor_id, v_conv.id, 'outbound', m.author, m.body,
      coalesce(m.media, '[]'::jsonb), 'queued', v_reply
    from jsonb_array_elements(coalesce(p_messages, '[]'::jsonb)) with ordinality as e(value, n)
    cross join lateral jsonb_to_record(e.value) as m(author text, body text, media jsonb)
    order by e.n
    returning id, body, media, created_at
  )
  select coalesce(jsonb_agg(id order by created_at), '[]'::jsonb), count(*),
    (array_agg(coalesce(nullif(body, ''),
       case when media @> '[{"type": "template"}]' then '[template]' else '[media]' end)
     order by created_at desc))[1]
  into v_ids, v_count, v_last from inserted;

  if p_ai_run is not null then
    insert into public.ai_runs (tenant_id, advisor_id, conversation_id, inbound_message_id, model,
      prompt_tokens, completion_tokens, latency_ms, outcome, error)
    select v_conv.tenant_id, v_conv.advisor_id, v_conv.id, v_newest, r.model,
      r.prompt_tokens, r.completion_tokens, r.latency_ms, r.outcome, r.error
    from jsonb_to_record(p_ai_run) as r(model text, prompt_tokens integer,
      completion_tokens integer, latency_ms integer, outcome text, error text);
  end if;

  -- Exactly what the model saw: a message that arrived meanwhile stays unhandled.
  update public.messages set handled_at = now()
  where id = any(p_seen) and direction = 'inbound' and handled_at is null;

  update public.conversations c set
    last_message_at = case when v_count = 0 then c.last_message_at else now() end,
    last_message_preview = coalesce(left(v_last, 120), c.last_message_preview),
    ai_attention = case when p_handoff ? 'hours' then false else c.ai_attention end,
    human_override_until = case when p_handoff ? 'hours'
      then now() + make_interval(secs => (p_handoff ->> 'hours')::float8 * 3600)
      else c.human_override_until end,
    handoff_reason = coalesce(p_handoff ->> 'reason', c.handoff_reason),
    needs_human = case when p_handoff ? 'needs_human' then (p_handoff ->> 'needs_human')::boolean
                       else c.needs_human or p_handoff is not null end
  where c.id = v_conv.id;

  return jsonb_build_object('committed', true, 'message_ids', v_ids);
end
$$;

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
