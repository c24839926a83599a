-- One writer for outbound messages: commit_reply.
--
-- Advisor sends (queue_advisor_message) now record their message with commit_reply (no AI
-- rule, no turn), so the conversation's reply bookkeeping (preview, handoff) is written in
-- one place, and Twilio's answers always arrive through update_outbound (the one place that
-- applies early status callbacks). record_outbound, which did both a second time, is dropped.

create or replace function public.queue_advisor_message(
  p_user_id uuid,
  p_conversation_id uuid,
  p_body text,
  p_media jsonb,
  p_override_hours double precision,
  p_idempotency_key text default null
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_existing public.send_requests;
  v_result jsonb;
  v_message_id uuid;
begin
  if p_idempotency_key is not null then
    insert into public.send_requests (user_id, idempotency_key)
    values (p_user_id, p_idempotency_key)
    on conflict (user_id, idempotency_key) do nothing;
    if not found then
      select * into v_existing from public.send_requests
      where user_id = p_user_id and idempotency_key = p_idempotency_key
      for update;
      if v_existing.created_at > now() - interval '24 hours' then
        return jsonb_build_object('message_id', v_existing.message_id, 'replay', true,
          'response', v_existing.response);
      end if;
      -- An expired key starts over.
      update public.send_requests set created_at = now(), message_id = null, response = null
      where user_id = p_user_id and idempotency_key = p_idempotency_key;
    end if;
  end if;

  v_result := public.commit_reply(
    p_conversation_id,
    '{}'::uuid[],
    jsonb_build_array(jsonb_build_object('author', 'advisor', 'body', p_body, 'media', p_media)),
    null,
    jsonb_build_object('reason', 'advisor replied', 'hours', p_override_hours, 'needs_human', false),
    false);
  v_message_id := (v_result -> 'message_ids' ->> 0)::uuid;

  if p_idempotency_key is not null then
    update public.send_requests set message_id = v_message_id
    where user_id = p_user_id and idempotency_key = p_idempotency_key;
  end if;
  return jsonb_build_object('message_id', v_message_id, 'replay', false, 'response', null);
end
$$;

drop function public.record_outbound(uuid, jsonb, jsonb, jsonb, uuid);
