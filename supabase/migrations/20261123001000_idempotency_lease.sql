-- Idempotency-Key of advisor sends: bound to the request, and never "in progress" for ever.
--
-- The key now remembers a hash of the request it was first used with: the same key with
-- another body is refused (422), as Stripe and the IETF Idempotency-Key draft do. The message
-- is committed in the same transaction as the key, so once the first request's lease (p_lease)
-- is over, a replay no longer waits for an answer that may never be written (the instance died
-- after sending): it answers with the stored message and its current status.

alter table public.send_requests add column if not exists request_hash text;
comment on column public.send_requests.request_hash is
  'SHA-256 of the request first sent with this key; another request with the key is refused.';

drop function public.queue_advisor_message(uuid, uuid, text, jsonb, double precision, text);
create function public.queue_advisor_message(
  p_user_id uuid,
  p_conversation_id uuid,
  p_body text,
  p_media jsonb,
  p_override_hours double precision,
  p_idempotency_key text default null,
  p_request_hash text default null,
  p_lease interval default interval '60 seconds'
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_existing public.send_requests;
  v_result jsonb;
  v_message_id uuid;
  v_status text;
begin
  if p_idempotency_key is not null then
    insert into public.send_requests (user_id, idempotency_key, request_hash)
    values (p_user_id, p_idempotency_key, p_request_hash)
    on conflict (user_id, idempotency_key) do nothing;
    if not found then
      select * into v_existing from public.send_requests
      where user_id = p_user_id and idempotency_key = p_idempotency_key
      for update;
      if v_existing.created_at > now() - interval '24 hours' then
        if v_existing.request_hash is distinct from p_request_hash then
          return jsonb_build_object('message_id', null, 'replay', true, 'response',
            jsonb_build_object('status', 422, 'body', jsonb_build_object(
              'error', 'idempotency_key_reused',
              'detail', 'this Idempotency-Key was used with a different request')));
        end if;
        if v_existing.response is null and v_existing.message_id is not null
           and v_existing.created_at < now() - p_lease then
          select m.status into v_status from public.messages m where m.id = v_existing.message_id;
          return jsonb_build_object('message_id', v_existing.message_id, 'replay', true,
            'response', jsonb_build_object('status', 202, 'body', jsonb_build_object(
              'message_id', v_existing.message_id, 'status', coalesce(v_status, 'unknown'))));
        end if;
        return jsonb_build_object('message_id', v_existing.message_id, 'replay', true,
          'response', v_existing.response);
      end if;
      -- An expired key starts over.
      update public.send_requests set created_at = now(), message_id = null, response = null,
        request_hash = p_request_hash
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

revoke all on function public.queue_advisor_message(uuid, uuid, text, jsonb, double precision,
  text, text, interval) from public, anon, authenticated;
grant execute on function public.queue_advisor_message(uuid, uuid, text, jsonb, double precision,
  text, text, interval) to assistant_functions, service_role;
