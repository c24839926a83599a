-- Recovery claims one unanswered turn at a time.
--
-- claim_unanswered_turns leased up to ten messages per turn for a whole batch of turns, each of
-- which may take a full request budget to answer: leases lapsed while the batch was still being
-- answered, and an overlapping run answered the same turn again. The sweep now claims a turn
-- just before answering it, for one lease, and leases exactly that conversation's messages.
-- Whether the AI may answer is decided by private.ai_may_answer, as everywhere else.

drop function public.claim_unanswered_turns(integer, interval, interval, interval, integer);

create function public.claim_unanswered_turn(
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
    -- One run per conversation: another run holding it is answering it.
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
      'history', (
        select coalesce(jsonb_agg(h.j order by h.created_at), '[]'::jsonb) from (
          select private.message_json(m) as j, m.created_at from public.messages m
          where m.conversation_id = c.id order by m.created_at desc limit p_history_limit) h))
    into v_result
    from public.conversations c
    join public.advisors a on a.id = c.advisor_id
    where c.id = v_conversation;
    return v_result;
  end loop;
  return null;
end
$$;

revoke all on function public.claim_unanswered_turn(interval, interval, interval, integer)
  from public, anon, authenticated;
grant execute on function public.claim_unanswered_turn(interval, interval, interval, integer)
  to assistant_functions, service_role;
