-- Advisor sends (the send function): idempotency keys, and queueing a message that a user
-- is allowed to send. Authorization happens before, under RLS as the calling user; these
-- functions only do the writes.

create table public.send_requests (
  user_id uuid not null references auth.users (id) on delete cascade,
  idempotency_key text not null check (length(idempotency_key) between 1 and 255),
  message_id uuid references public.messages (id) on delete set null,
  response jsonb,
  created_at timestamptz not null default now(),
  primary key (user_id, idempotency_key)
);
comment on table public.send_requests is
  'Idempotency-Key of advisor sends: the same key from the same user within 24 h replays the first answer.';
create index send_requests_created_idx on public.send_requests (created_at);
alter table public.send_requests enable row level security;
revoke all on public.send_requests from anon, authenticated;

-- The functions' login role runs the caller's RLS checks by switching to authenticated inside
-- a transaction, as Supabase's own API (authenticator) does. Without claims it sees nothing.
grant authenticated to assistant_functions;

-- Queue an advisor's message: replay an idempotent request, or insert the queued row and hand
-- the conversation to the human for p_override_hours. Returns {message_id, replay, response}.
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

  v_result := public.record_outbound(
    p_conversation_id,
    jsonb_build_array(jsonb_build_object('author', 'advisor', 'body', p_body, 'media', p_media,
      'status', 'queued')),
    null,
    jsonb_build_object('reason', 'advisor replied', 'hours', p_override_hours, 'needs_human', false));
  v_message_id := (v_result -> 'message_ids' ->> 0)::uuid;

  if p_idempotency_key is not null then
    update public.send_requests set message_id = v_message_id
    where user_id = p_user_id and idempotency_key = p_idempotency_key;
  end if;
  return jsonb_build_object('message_id', v_message_id, 'replay', false, 'response', null);
end
$$;

-- Remember the answer given for an idempotent request.
create or replace function public.finish_send_request(
  p_user_id uuid, p_idempotency_key text, p_response jsonb
) returns void
language sql security definer set search_path = '' as $$
  update public.send_requests set response = p_response
  where user_id = p_user_id and idempotency_key = p_idempotency_key
$$;

revoke all on function public.queue_advisor_message(uuid, uuid, text, jsonb, double precision, text),
  public.finish_send_request(uuid, text, jsonb) from public, anon, authenticated;
grant execute on function public.queue_advisor_message(uuid, uuid, text, jsonb, double precision, text),
  public.finish_send_request(uuid, text, jsonb) to assistant_functions, service_role;
