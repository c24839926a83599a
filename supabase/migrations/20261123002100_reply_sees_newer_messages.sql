-- A reply never ignores a customer message that arrived before it was committed.
--
-- A message that reads as complete is answered at once (shared/burst.py); when the customer
-- adds something while the model is still working ("¿Tienen envíos?" ... "a Cali"), the reply
-- to the first message alone would be followed by a second one. commit_reply now refuses an AI
-- reply (reason `newer_message`) when an unhandled customer message newer than the ones the
-- model saw exists; the instance holding the conversation then answers the whole turn at once
-- (answer_turn's loop). Same signature and body otherwise.

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
  if p_require_ai and v_newest is not null and exists (
    select 1 from public.messages m
    where m.conversation_id = v_conv.id and m.direction = 'inbound' and m.handled_at is null
      and m.created_at > (select n.created_at from public.messages n where n.id = v_newest)
  ) then
    return jsonb_build_object('committed', false, 'reason', 'newer_message');
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
    perform private.record_ai_run(v_conv, v_newest, p_ai_run);
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
