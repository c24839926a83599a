-- Commit a reply before it is sent, and answer every message of a conversation live.
--
-- commit_reply records the AI's reply (outbound rows queued, the AI run, the handoff) and marks
-- handled exactly the inbound messages the model saw, in one statement that refuses when a
-- human took over, the AI was paused or turned off, the customer opted out, or another
-- instance already answered those messages. Only a committed reply is sent; Twilio's answer
-- (or its status callback, which names our row) then fills in the sid.

-- May the AI speak in this conversation right now? (one rule: ingest, commit and sweeps)
create or replace function private.ai_may_answer(c public.conversations, advisor_active boolean)
returns boolean
language sql stable set search_path = '' as $$
  select advisor_active and c.ai_attention and c.ai_disabled_at is null
    and (c.human_override_until is null or c.human_override_until <= now())
    and c.opted_out_at is null
$$;
revoke all on function private.ai_may_answer(public.conversations, boolean)
  from public, anon, authenticated;

create or replace function public.commit_reply(
  p_conversation_id uuid,
  p_seen uuid[],                 -- the inbound messages the model saw, newest last
  p_messages jsonb,              -- [{author, body, media}] in sending order
  p_ai_run jsonb default null,   -- {model, prompt_tokens, completion_tokens, latency_ms, outcome, error}
  p_handoff jsonb default null,  -- {reason, hours[, needs_human]} pauses the AI; {reason, needs_human} flags
  p_require_ai boolean default true  -- false for notices the customer must get (STOP confirmation)
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_conv public.conversations;
  v_active boolean;
  v_newest uuid := p_seen[array_upper(p_seen, 1)];
  v_ids jsonb;
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
      media, status)
    select v_conv.tenant_id, v_conv.advisor_id, v_conv.id, 'outbound', m.author, m.body,
      coalesce(m.media, '[]'::jsonb), 'queued'
    from jsonb_array_elements(coalesce(p_messages, '[]'::jsonb)) with ordinality as e(value, n)
    cross join lateral jsonb_to_record(e.value) as m(author text, body text, media jsonb)
    order by e.n
    returning id, body
  )
  select coalesce(jsonb_agg(id), '[]'::jsonb), (array_agg(body))[count(*)]
  into v_ids, v_last from inserted;

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
    last_message_at = case when v_last is null then c.last_message_at else now() end,
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

-- Twilio's answers to the sends of a committed reply, in one round trip:
-- [{message_id, provider_sid, status, error_code, error_message}].
create or replace function public.record_send_results(p_results jsonb) returns void
language plpgsql security definer set search_path = '' as $$
declare
  r record;
begin
  for r in select * from jsonb_to_recordset(p_results) as x(message_id uuid, provider_sid text,
    status text, error_code integer, error_message text)
  loop
    perform public.update_outbound(r.message_id, r.provider_sid, r.status, r.error_code,
      r.error_message);
  end loop;
end
$$;

-- What the instance holding a conversation still has to answer: the inbound messages nobody
-- handled yet (oldest first) and whether the AI may answer; the fresh history only when there
-- is something to answer (the common answer, "nothing", stays one index probe).
create or replace function public.pending_turn(p_conversation_id uuid, p_history_limit integer default 20)
returns jsonb
language plpgsql stable security definer set search_path = '' as $$
declare
  v_unhandled jsonb;
  v_result jsonb;
begin
  select jsonb_agg(m.id order by m.created_at) into v_unhandled from public.messages m
  where m.conversation_id = p_conversation_id and m.direction = 'inbound' and m.handled_at is null
    and (m.lease_until is null or m.lease_until < now());
  if v_unhandled is null then
    return jsonb_build_object('unhandled', '[]'::jsonb);
  end if;
  select jsonb_build_object(
    'unhandled', v_unhandled,
    'ai_allowed', private.ai_may_answer(c, a.is_active),
    'audio_available', c.audio_available,
    'history', (
      select coalesce(jsonb_agg(h.j order by h.created_at), '[]'::jsonb) from (
        select private.message_json(m) as j, m.created_at from public.messages m
        where m.conversation_id = c.id order by m.created_at desc limit p_history_limit) h))
  into v_result
  from public.conversations c
  join public.advisors a on a.id = c.advisor_id
  where c.id = p_conversation_id;
  return v_result;
end
$$;

-- A status callback, in one round trip. It can name our row (the StatusCallback URL carries
-- ?message_id=): then a send whose answer never reached us (a crash, a lost response) gets its
-- sid first, and the status is applied by apply_status as for any callback.
create or replace function public.record_status(
  p_provider_sid text, p_status text, p_error_code integer default null,
  p_error_message text default null, p_message_id uuid default null
) returns text
language plpgsql security definer set search_path = '' as $$
begin
  if p_message_id is not null then
    update public.messages set provider_sid = p_provider_sid,
      status = case when status in ('queued', 'sending') then 'sent' else status end
    where id = p_message_id and direction = 'outbound' and provider_sid is null
      and not exists (select 1 from public.messages o where o.provider_sid = p_provider_sid);
  end if;
  return public.apply_status(p_provider_sid, p_status, p_error_code, p_error_message);
end
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.commit_reply(uuid, uuid[], jsonb, jsonb, jsonb, boolean)',
    'public.record_send_results(jsonb)',
    'public.pending_turn(uuid, integer)',
    'public.record_status(text, text, integer, text, uuid)'
  ] loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to assistant_functions, service_role', f);
  end loop;
end
$$;

-- Resends also say what the row was before the claim and when it was committed, so the sweep
-- can ask Twilio whether a committed message was in fact sent before sending it again.
create or replace function public.claim_resends(
  p_limit integer, p_min_age interval, p_max_attempts integer, p_retry_codes integer[],
  p_backoff interval
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_result jsonb;
begin
  with picked as (
    select m.id, m.status as status_before, m.error_code as error_code_before
    from public.messages m
    where m.direction = 'outbound' and m.attempts < p_max_attempts
      and (
        -- queued with a sid is queued at Twilio: only rows Twilio never saw are ours to send
        (m.status = 'queued' and m.provider_sid is null and m.updated_at < now() - p_min_age)
        or (m.status = 'failed' and m.provider_sid is null
            and (m.error_code is null or m.error_code = any(p_retry_codes))
            and m.updated_at < now() - p_backoff * power(2, greatest(m.attempts - 1, 0)))
      )
    order by m.created_at
    limit p_limit
    for update skip locked
  ),
  claimed as (
    update public.messages m set status = 'sending', attempts = m.attempts + 1
    from picked where m.id = picked.id
    returning m.*, picked.status_before, picked.error_code_before
  )
  select coalesce(jsonb_agg(jsonb_build_object(
    'message_id', cl.id, 'body', cl.body, 'media', cl.media, 'attempts', cl.attempts,
    'created_at', cl.created_at, 'status_before', cl.status_before,
    'error_code_before', cl.error_code_before,
    'customer_phone', c.customer_phone, 'twilio_phone_number', a.twilio_phone_number)
    order by cl.created_at), '[]'::jsonb)
  into v_result
  from claimed cl
  join public.conversations c on c.id = cl.conversation_id
  join public.advisors a on a.id = cl.advisor_id;
  return v_result;
end
$$;
