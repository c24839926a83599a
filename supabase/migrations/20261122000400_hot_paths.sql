-- The functions' hot paths as SQL functions, one round trip each, and the role that runs them.
--
-- The Cloud Functions connect as a login role that is a member of assistant_functions. That
-- role may execute these functions and nothing else: no direct table access. The functions are
-- security definer (owned by the migration owner), so the data rules below hold for every caller.

do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'assistant_functions') then
    create role assistant_functions nologin;
  end if;
end
$$;
grant usage on schema public to assistant_functions;

-- Forward-only delivery status: a late or repeated callback never moves a message back.
create or replace function private.status_rank(status text) returns integer
language sql immutable as $$
  select case status
    when 'received' then 0
    when 'queued' then 1
    when 'sending' then 2
    when 'sent' then 3
    when 'failed' then 4
    when 'undelivered' then 4
    when 'delivered' then 5
    when 'read' then 6
    else -1
  end
$$;

-- Routing: the active advisor who owns a Twilio number, or null.
create or replace function public.route_advisor(p_number text) returns jsonb
language sql stable security definer set search_path = '' as $$
  select jsonb_build_object(
    'id', a.id, 'tenant_id', a.tenant_id, 'name', a.name, 'phone_number', a.phone_number,
    'twilio_phone_number', a.twilio_phone_number, 'settings', a.settings)
  from public.advisors a
  where a.twilio_phone_number = p_number and a.is_active
$$;

create or replace function private.message_json(m public.messages) returns jsonb
language sql stable as $$
  select jsonb_build_object(
    'id', m.id, 'direction', m.direction, 'author', m.author, 'body', m.body,
    'media', m.media, 'transcript', m.transcript, 'status', m.status, 'created_at', m.created_at)
$$;

-- One inbound message: upsert the conversation, insert the message (a repeated sid inserts
-- nothing), apply STOP/START, decide whether the AI may answer, and return the state and the
-- recent history the model needs.
create or replace function public.ingest_inbound(
  p_advisor_id uuid,
  p_customer_phone text,
  p_customer_name text,
  p_provider_sid text,
  p_body text,
  p_media jsonb default '[]'::jsonb,
  p_opt text default null,            -- 'out' (STOP) or 'in' (START)
  p_ai_permitted boolean default true, -- false when a rate limit withholds the AI
  p_history_limit integer default 20
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_tenant uuid;
  v_conv public.conversations;
  v_message_id uuid;
  v_created timestamptz;
  v_is_new boolean := true;
  v_opt_changed boolean := false;
  v_ai_allowed boolean;
  v_history jsonb;
begin
  if p_opt is not null and p_opt not in ('out', 'in') then
    raise exception 'p_opt must be out, in or null' using errcode = '22023';
  end if;
  select tenant_id into v_tenant from public.advisors where id = p_advisor_id;
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
    and v_conv.ai_attention and v_conv.ai_disabled_at is null
    and (v_conv.human_override_until is null or v_conv.human_override_until <= now())
    and v_conv.opted_out_at is null;

  -- A message the AI will not answer is handled now, so the recovery sweep leaves it alone.
  if v_is_new and not v_ai_allowed then
    update public.messages set handled_at = now() where id = v_message_id;
  end if;

  select coalesce(jsonb_agg(h.j order by h.created_at), '[]'::jsonb) into v_history
  from (
    select private.message_json(m) as j, m.created_at from public.messages m
    where m.conversation_id = v_conv.id
    order by m.created_at desc
    limit p_history_limit
  ) h;

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
    'history', v_history);
end
$$;

-- Record outbound messages (already sent, queued, or failed) with the AI run that produced
-- them, mark the inbound turn handled, and apply a handoff: one round trip after the model.
create or replace function public.record_outbound(
  p_conversation_id uuid,
  p_messages jsonb,                      -- [{author, body, media, provider_sid, status, error_code, error_message}]
  p_ai_run jsonb default null,           -- {model, prompt_tokens, completion_tokens, latency_ms, outcome, error}
  p_handoff jsonb default null,          -- {reason, hours[, needs_human]} pauses the AI; {reason, needs_human} only flags
  p_handled_up_to uuid default null      -- inbound message whose turn this answers (and all before it)
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_conv public.conversations;
  v_ids jsonb;
  v_last text;
begin
  select * into v_conv from public.conversations where id = p_conversation_id;
  if not found then
    raise exception 'unknown conversation %', p_conversation_id using errcode = 'P0002';
  end if;

  with inserted as (
    insert into public.messages (tenant_id, advisor_id, conversation_id, direction, author, body,
      media, provider_sid, status, error_code, error_message, attempts)
    select v_conv.tenant_id, v_conv.advisor_id, v_conv.id, 'outbound', m.author, m.body,
      coalesce(m.media, '[]'::jsonb), m.provider_sid, coalesce(m.status, 'queued'),
      m.error_code, m.error_message, case when coalesce(m.status, 'queued') = 'queued' then 0 else 1 end
    from jsonb_array_elements(coalesce(p_messages, '[]'::jsonb)) with ordinality as e(value, n)
    cross join lateral jsonb_to_record(e.value) as m(author text, body text, media jsonb,
      provider_sid text, status text, error_code integer, error_message text)
    order by e.n
    returning id, provider_sid, body
  )
  select coalesce(jsonb_agg(id), '[]'::jsonb), (array_agg(body))[count(*)]
  into v_ids, v_last from inserted;

  -- Callbacks that arrived before these rows existed.
  with early as (
    delete from public.early_status_callbacks e
    using public.messages m
    where m.provider_sid = e.provider_sid and m.conversation_id = v_conv.id
    returning e.*
  )
  update public.messages m set status = early.status,
    error_code = coalesce(early.error_code, m.error_code),
    error_message = coalesce(early.error_message, m.error_message)
  from early
  where m.provider_sid = early.provider_sid
    and private.status_rank(early.status) > private.status_rank(m.status);

  if p_ai_run is not null then
    insert into public.ai_runs (tenant_id, advisor_id, conversation_id, inbound_message_id, model,
      prompt_tokens, completion_tokens, latency_ms, outcome, error)
    select v_conv.tenant_id, v_conv.advisor_id, v_conv.id, p_handled_up_to, r.model,
      r.prompt_tokens, r.completion_tokens, r.latency_ms, r.outcome, r.error
    from jsonb_to_record(p_ai_run) as r(model text, prompt_tokens integer,
      completion_tokens integer, latency_ms integer, outcome text, error text);
  end if;

  if p_handled_up_to is not null then
    update public.messages set handled_at = now()
    where conversation_id = v_conv.id and direction = 'inbound' and handled_at is null
      and created_at <= (select created_at from public.messages where id = p_handled_up_to);
  end if;

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

  return jsonb_build_object('message_ids', v_ids);
end
$$;

-- Finish a queued outbound message once Twilio answered: its sid and status, or the failure.
create or replace function public.update_outbound(
  p_message_id uuid, p_provider_sid text, p_status text,
  p_error_code integer default null, p_error_message text default null
) returns void
language plpgsql security definer set search_path = '' as $$
begin
  update public.messages m set
    provider_sid = coalesce(p_provider_sid, m.provider_sid),
    status = case when private.status_rank(p_status) > private.status_rank(m.status)
                  or m.status = 'failed' then p_status else m.status end,
    error_code = p_error_code,
    error_message = p_error_message,
    attempts = m.attempts + 1
  where m.id = p_message_id and m.direction = 'outbound';

  -- A callback may have beaten us here.
  with early as (
    delete from public.early_status_callbacks e where e.provider_sid = p_provider_sid returning e.*
  )
  update public.messages m set status = early.status,
    error_code = coalesce(early.error_code, m.error_code),
    error_message = coalesce(early.error_message, m.error_message)
  from early
  where m.id = p_message_id and private.status_rank(early.status) > private.status_rank(m.status);
end
$$;

-- A delivery-status callback. Returns 'applied', 'unchanged' (repeat or late) or 'early'
-- (no message with that sid yet: kept and applied when the message is recorded).
create or replace function public.apply_status(
  p_provider_sid text, p_status text, p_error_code integer default null,
  p_error_message text default null
) returns text
language plpgsql security definer set search_path = '' as $$
declare
  v_found boolean;
  v_changed integer;
begin
  if private.status_rank(p_status) < 1 then
    raise exception 'unknown status %', p_status using errcode = '22023';
  end if;
  update public.messages m set
    status = p_status,
    error_code = coalesce(p_error_code, m.error_code),
    error_message = coalesce(p_error_message, m.error_message)
  where m.provider_sid = p_provider_sid and m.direction = 'outbound'
    and private.status_rank(p_status) > private.status_rank(m.status);
  get diagnostics v_changed = row_count;
  if v_changed > 0 then
    return 'applied';
  end if;
  select true into v_found from public.messages where provider_sid = p_provider_sid;
  if v_found then
    return 'unchanged';
  end if;
  insert into public.early_status_callbacks as e (provider_sid, status, error_code, error_message)
  values (p_provider_sid, p_status, p_error_code, p_error_message)
  on conflict (provider_sid) do update set
    status = excluded.status,
    error_code = coalesce(excluded.error_code, e.error_code),
    error_message = coalesce(excluded.error_message, e.error_message)
  where private.status_rank(excluded.status) > private.status_rank(e.status);
  return 'early';
end
$$;

-- Handoff: pause or resume the AI for one conversation.
create or replace function public.set_handoff(
  p_conversation_id uuid, p_ai_attention boolean, p_until timestamptz default null,
  p_reason text default null
) returns jsonb
language sql security definer set search_path = '' as $$
  update public.conversations set
    ai_attention = p_ai_attention,
    human_override_until = p_until,
    handoff_reason = case when p_ai_attention then null else coalesce(p_reason, handoff_reason) end,
    needs_human = not p_ai_attention
  where id = p_conversation_id
  returning jsonb_build_object('conversation_id', id, 'ai_attention', ai_attention,
    'human_override_until', human_override_until)
$$;

-- Inbound for a number no active advisor owns: kept raw, once per sid.
create or replace function public.store_unrouted(
  p_provider_sid text, p_to text, p_from text, p_payload jsonb
) returns boolean
language plpgsql security definer set search_path = '' as $$
declare
  v_id uuid;
begin
  insert into public.unrouted_messages (provider_sid, to_number, from_number, payload)
  values (p_provider_sid, p_to, p_from, p_payload)
  on conflict (provider_sid) do nothing
  returning id into v_id;
  return v_id is not null;
end
$$;

-- The newest inbound message of a conversation (burst check when Redis is unavailable).
create or replace function public.latest_inbound_id(p_conversation_id uuid) returns uuid
language sql stable security definer set search_path = '' as $$
  select id from public.messages
  where conversation_id = p_conversation_id and direction = 'inbound'
  order by created_at desc limit 1
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.route_advisor(text)',
    'public.ingest_inbound(uuid, text, text, text, text, jsonb, text, boolean, integer)',
    'public.record_outbound(uuid, jsonb, jsonb, jsonb, uuid)',
    'public.update_outbound(uuid, text, text, integer, text)',
    'public.apply_status(text, text, integer, text)',
    'public.set_handoff(uuid, boolean, timestamptz, text)',
    'public.store_unrouted(text, text, text, jsonb)',
    'public.latest_inbound_id(uuid)'
  ] loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to assistant_functions, service_role', f);
  end loop;
end
$$;
revoke all on all functions in schema private from public;
grant execute on function private.visible_advisor_ids(), private.staff_tenant_ids(),
  private.member_tenant_ids(), private.admin_tenant_ids() to authenticated;
