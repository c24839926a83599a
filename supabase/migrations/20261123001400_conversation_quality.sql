-- Conversation quality: the handoff carries a summary for the advisor, returning to the AI is
-- recorded, dashboards mark a conversation read, cached prompt tokens are recorded, and the
-- history the model sees only grows between trims (so the provider can cache the prompt).

alter table public.conversations
  add column if not exists handoff_summary text,
  add column if not exists handoff_at timestamptz,
  add column if not exists ai_resumed_at timestamptz,
  add column if not exists ai_resumed_by uuid references auth.users (id) on delete set null;
comment on column public.conversations.handoff_summary is
  'What the customer wants and what was said, for the advisor (written at handoff).';
comment on column public.conversations.ai_resumed_by is
  'Who gave the conversation back to the AI (null: the automatic return after HANDOFF_HOURS).';

alter table public.ai_runs add column if not exists cached_tokens integer;
comment on column public.ai_runs.cached_tokens is
  'Prompt tokens the provider served from its prompt cache (usage.prompt_tokens_details).';

-- Giving the conversation back to the AI (a dashboard sets ai_attention, or the expiry does)
-- clears the override and records when and by whom, in one place.
create or replace function private.record_ai_resumed() returns trigger
language plpgsql set search_path = '' as $$
begin
  if new.ai_attention and not old.ai_attention then
    new.human_override_until := null;
    new.ai_resumed_at := now();
    new.ai_resumed_by := auth.uid();
  end if;
  return new;
end
$$;
revoke all on function private.record_ai_resumed() from public, anon, authenticated;
create trigger conversations_ai_resumed before update of ai_attention on public.conversations
  for each row execute function private.record_ai_resumed();

-- The history window the model sees: at least p_min messages and at most p_min + p_min/2,
-- whose start moves in blocks of p_min/2. Between two trims every turn only appends, so
-- consecutive prompts share their prefix (OpenAI caches the longest identical prefix).
create or replace function private.history(p_conversation_id uuid, p_min integer)
returns jsonb
language sql stable set search_path = '' as $$
  with counted as (
    select count(*)::integer as n, greatest(p_min / 2, 1) as block
    from public.messages where conversation_id = p_conversation_id
  )
  select coalesce(jsonb_agg(h.j order by h.created_at), '[]'::jsonb)
  from counted, lateral (
    select private.message_json(m) as j, m.created_at from public.messages m
    where m.conversation_id = p_conversation_id
    order by m.created_at desc
    limit counted.n - greatest(0, ((counted.n - 1 - p_min) / counted.block) * counted.block)
  ) h
$$;
revoke all on function private.history(uuid, integer) from public, anon, authenticated;

-- message_json now carries the Twilio sid (the typing indicator names the newest message).
create or replace function private.message_json(m public.messages) returns jsonb
language sql stable set search_path = '' as $$
  select jsonb_build_object(
    'id', m.id, 'direction', m.direction, 'author', m.author, 'body', m.body,
    'media', m.media, 'transcript', m.transcript, 'status', m.status, 'created_at', m.created_at,
    'sid', case when m.direction = 'inbound' then m.provider_sid end)
$$;

-- ingest_inbound, with the growing history window and the AI rule from private.ai_may_answer.
create or replace function public.ingest_inbound(
  p_advisor_id uuid,
  p_customer_phone text,
  p_customer_name text,
  p_provider_sid text,
  p_body text,
  p_media jsonb default '[]'::jsonb,
  p_opt text default null,
  p_ai_permitted boolean default true,
  p_history_limit integer default 20
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_tenant uuid;
  v_active boolean;
  v_conv public.conversations;
  v_message_id uuid;
  v_created timestamptz;
  v_is_new boolean := true;
  v_opt_changed boolean := false;
  v_ai_allowed boolean;
begin
  if p_opt is not null and p_opt not in ('out', 'in') then
    raise exception 'p_opt must be out, in or null' using errcode = '22023';
  end if;
  select tenant_id, is_active into v_tenant, v_active from public.advisors where id = p_advisor_id;
  if v_tenant is null then
    raise exception 'unknown advisor %', p_advisor_id using errcode = 'P0002';
  end if;

  select * into v_conv from public.conversations
  where advisor_id = p_advisor_id and customer_phone = p_customer_phone;
  if not found then
    insert into public.conversations (tenant_id, advisor_id, customer_phone, customer_name,
      audio_available)
    select v_tenant, p_advisor_id, p_customer_phone, p_customer_name,
      coalesce((a.settings ->> 'audio_available')::boolean, false)
    from public.advisors a where a.id = p_advisor_id
    on conflict (advisor_id, customer_phone) do nothing
    returning * into v_conv;
    if not found then  -- a concurrent first message created it
      select * into v_conv from public.conversations
      where advisor_id = p_advisor_id and customer_phone = p_customer_phone;
    end if;
  end if;

  insert into public.messages (tenant_id, advisor_id, conversation_id, direction, author, body,
    media, provider_sid, status)
  values (v_tenant, p_advisor_id, v_conv.id, 'inbound', 'customer', p_body,
    coalesce(p_media, '[]'::jsonb), p_provider_sid, 'received')
  on conflict (provider_sid) do nothing
  returning id, created_at into v_message_id, v_created;

  if v_message_id is null then
    v_is_new := false;
    select id, created_at into v_message_id, v_created
    from public.messages where provider_sid = p_provider_sid;
    select * into v_conv from public.conversations where id = v_conv.id;
  else
    v_opt_changed := (p_opt = 'out' and v_conv.opted_out_at is null)
                  or (p_opt = 'in' and v_conv.opted_out_at is not null);
    update public.conversations c set
      customer_name = coalesce(p_customer_name, c.customer_name),
      last_inbound_at = now(),
      last_message_at = now(),
      last_message_preview = left(coalesce(nullif(p_body, ''), '[media]'), 120),
      unread_count = c.unread_count + 1,
      status = 'open',
      opted_out_at = case p_opt when 'out' then coalesce(c.opted_out_at, now())
                                when 'in' then null else c.opted_out_at end
    where c.id = v_conv.id
    returning * into v_conv;
  end if;

  v_ai_allowed := v_is_new and p_ai_permitted and p_opt is null
    and private.ai_may_answer(v_conv, v_active);

  -- A message the AI will not answer is handled now, so the recovery sweep leaves it alone.
  if v_is_new and not v_ai_allowed then
    update public.messages set handled_at = now() where id = v_message_id;
  end if;

  return jsonb_build_object(
    'message_id', v_message_id,
    'created_us', (extract(epoch from v_created) * 1000000)::bigint,
    'is_new', v_is_new,
    'conversation_id', v_conv.id,
    'tenant_id', v_tenant,
    'ai_attention', v_conv.ai_attention,
    'human_override_until', v_conv.human_override_until,
    'audio_available', v_conv.audio_available,
    'opted_out_at', v_conv.opted_out_at,
    'opt_changed', v_opt_changed,
    'ai_allowed', v_ai_allowed,
    'history', private.history(v_conv.id, p_history_limit));
end
$$;

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
    'history', private.history(c.id, p_history_limit))
  into v_result
  from public.conversations c
  join public.advisors a on a.id = c.advisor_id
  where c.id = p_conversation_id;
  return v_result;
end
$$;

create or replace function public.claim_unanswered_turn(
  p_min_age interval, p_max_age interval, p_lease interval, p_history_limit integer default 20
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_conversation uuid;
  v_newest uuid;
  v_result jsonb;
begin
  for v_conversation in
    select m.conversation_id from public.messages m
    where m.direction = 'inbound' and m.handled_at is null
      and m.created_at < now() - p_min_age and m.created_at > now() - p_max_age
      and (m.lease_until is null or m.lease_until < now())
    order by m.created_at
    limit 50
  loop
    perform 1 from public.conversations c where c.id = v_conversation for update skip locked;
    continue when not found;
    with leased as (
      update public.messages m set lease_until = now() + p_lease
      where m.conversation_id = v_conversation and m.direction = 'inbound'
        and m.handled_at is null and m.created_at > now() - p_max_age
        and (m.lease_until is null or m.lease_until < now())
      returning m.id, m.created_at
    )
    select id into v_newest from leased order by created_at desc limit 1;
    continue when v_newest is null;

    select jsonb_build_object(
      'conversation_id', c.id,
      'message_id', v_newest,
      'customer_phone', c.customer_phone,
      'twilio_phone_number', a.twilio_phone_number,
      'audio_available', c.audio_available,
      'ai_allowed', private.ai_may_answer(c, a.is_active),
      'history', private.history(c.id, p_history_limit))
    into v_result
    from public.conversations c
    join public.advisors a on a.id = c.advisor_id
    where c.id = v_conversation;
    return v_result;
  end loop;
  return null;
end
$$;

-- commit_reply, now storing the handoff's summary and time, and the run's cached tokens.
create or replace function public.commit_reply(
  p_conversation_id uuid,
  p_seen uuid[],
  p_messages jsonb,
  p_ai_run jsonb default null,
  p_handoff jsonb default null,  -- {reason, summary, hours[, needs_human]} or {reason, summary, needs_human}
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
  select c.* into v_conv from public.conversations c where c.id = p_conversation_id for update;
  if not found then
    raise exception 'unknown conversation %', p_conversation_id using errcode = 'P0002';
  end if;
  select a.is_active into v_active from public.advisors a where a.id = v_conv.advisor_id;

  if p_require_ai and not private.ai_may_answer(v_conv, v_active) then
    return jsonb_build_object('committed', false, 'reason', 'ai_not_allowed');
  end if;
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
      prompt_tokens, completion_tokens, cached_tokens, latency_ms, outcome, error)
    select v_conv.tenant_id, v_conv.advisor_id, v_conv.id, v_newest, r.model,
      r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.latency_ms, r.outcome, r.error
    from jsonb_to_record(p_ai_run) as r(model text, prompt_tokens integer,
      completion_tokens integer, cached_tokens integer, latency_ms integer, outcome text,
      error text);
  end if;

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
    handoff_summary = case when p_handoff ? 'summary' then left(p_handoff ->> 'summary', 2000)
                           else c.handoff_summary end,
    handoff_at = case when p_handoff ? 'summary' then now() else c.handoff_at end,
    needs_human = case when p_handoff ? 'needs_human' then (p_handoff ->> 'needs_human')::boolean
                       else c.needs_human or p_handoff is not null end
  where c.id = v_conv.id;

  return jsonb_build_object('committed', true, 'message_ids', v_ids);
end
$$;

-- A dashboard opened the conversation: nothing unread, and the customer's newest message to
-- mark read at Twilio. Only for a user who may see the conversation (the RLS rule).
create or replace function public.mark_conversation_read(p_user_id uuid, p_conversation_id uuid)
returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_conversation uuid;
begin
  update public.conversations c set unread_count = 0
  where c.id = p_conversation_id
    and c.advisor_id in (select private.visible_advisor_ids_for(p_user_id))
  returning c.id into v_conversation;
  if v_conversation is null then
    return null;
  end if;
  return jsonb_build_object('newest_inbound_sid', (
    select m.provider_sid from public.messages m
    where m.conversation_id = v_conversation and m.direction = 'inbound'
    order by m.created_at desc limit 1));
end
$$;
revoke all on function public.mark_conversation_read(uuid, uuid) from public, anon, authenticated;
grant execute on function public.mark_conversation_read(uuid, uuid) to assistant_functions, service_role;
