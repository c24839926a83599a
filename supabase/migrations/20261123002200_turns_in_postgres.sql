-- A conversation's turn is held in Postgres, in the round trips the webhook makes anyway.
--
-- One instance at a time answers a conversation; the others return and leave their message to
-- it (it answers, before it lets go, whatever arrived meanwhile). That hold was a Redis lock,
-- two Upstash calls per reply (take, release), and a burst's "newest message" was a Redis mark,
-- two more per waiting fragment. Each Upstash call costs the webhook several times the CPU of
-- a Postgres call, and Postgres already knows which message is newest and which are handled:
-- - receive_inbound stores the message (ingest_inbound, unchanged) and, when the AI may answer
--   at once, takes the turn in the same round trip;
-- - take_turn takes it later (a fragment after its burst wait, a sweep, the holder's next turn),
--   and tells a fragment that a newer message will answer, or that its turn was answered;
-- - finish_turn lets go and returns what arrived meanwhile (pending_turn), in one round trip;
-- - withhold_turn lets go for a message the rate limits withhold from the AI.
-- Release and the check for new messages are one transaction, so a message is never left with
-- nobody to answer it: either the holder's check sees it, or its own take_turn finds the turn
-- free (waiting on the holder's row lock if need be).

-- Who holds each conversation's turn, and until when (a crashed holder's turn lapses). A row
-- per conversation that ever had a turn, updated in place: letting go sets held_until to
-- -infinity rather than deleting, so taking and letting go are HOT updates of one row (no new
-- index entries; an insert and a delete per reply cost a third more database time).
create table private.turn_holders (
  conversation_id uuid primary key references public.conversations (id) on delete cascade,
  token uuid not null,
  held_until timestamptz not null
) with (fillfactor = 50);
revoke all on private.turn_holders from public, anon, authenticated, service_role;

-- Take the conversation's turn for p_lease. With p_message_id (a fragment that waited), first:
-- answered (another turn covered it), or superseded (a newer customer message is still to be
-- answered: its own request answers the burst). Returns {held, token} or {held: false, reason}.
create function public.take_turn(
  p_conversation_id uuid, p_lease interval, p_message_id uuid default null
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_created timestamptz;
  v_handled timestamptz;
  v_token uuid;
begin
  if p_message_id is not null then
    select m.created_at, m.handled_at into v_created, v_handled
    from public.messages m where m.id = p_message_id;
    if v_handled is not null then
      return jsonb_build_object('held', false, 'reason', 'answered');
    end if;
    if exists (
      select 1 from public.messages m
      where m.conversation_id = p_conversation_id and m.direction = 'inbound'
        and m.handled_at is null and m.created_at > v_created
    ) then
      return jsonb_build_object('held', false, 'reason', 'superseded');
    end if;
  end if;
  insert into private.turn_holders as t (conversation_id, token, held_until)
  values (p_conversation_id, gen_random_uuid(), clock_timestamp() + p_lease)
  on conflict (conversation_id) do update
    set token = excluded.token, held_until = excluded.held_until
    where t.held_until < clock_timestamp()
  returning t.token into v_token;
  if v_token is null then
    return jsonb_build_object('held', false, 'reason', 'busy');
  end if;
  return jsonb_build_object('held', true, 'token', v_token);
end
$$;

-- Let go of the turn (only the holder's own token does) and return what is left to answer.
-- The release needs no durability (lost in a crash, the turn lapses), so its commit does not
-- wait for the WAL flush: that wait was most of its cost.
create function public.finish_turn(
  p_conversation_id uuid, p_token uuid, p_history_limit integer default 20,
  p_knowledge_top_k integer default 0
) returns jsonb
language plpgsql security definer set search_path = '' as $$
begin
  perform set_config('synchronous_commit', 'off', true);
  update private.turn_holders set held_until = '-infinity'
  where conversation_id = p_conversation_id and token = p_token;
  return public.pending_turn(p_conversation_id, p_history_limit, p_knowledge_top_k);
end
$$;

-- A message the rate limits withhold from the AI (they are asked after storing, only for a
-- message the AI would answer): handled without a reply, and the turn let go when its request
-- took it. (A message that found the turn taken in that moment would have to pass limits this
-- one failed, so it is left to the sweep rather than answered here.)
create function public.withhold_turn(p_conversation_id uuid, p_message_id uuid, p_token uuid)
returns void
language sql security definer set search_path = '' as $$
  update public.messages set handled_at = now()
  where id = p_message_id and conversation_id = p_conversation_id and direction = 'inbound'
    and handled_at is null;
  update private.turn_holders set held_until = '-infinity'
  where conversation_id = p_conversation_id and token = p_token;
$$;

-- ingest_inbound, and with p_turn_lease the turn too when the AI may answer this message.
create function public.receive_inbound(
  p_turn_lease interval,
  p_advisor_id uuid,
  p_customer_phone text,
  p_customer_name text,
  p_provider_sid text,
  p_body text,
  p_media jsonb default '[]'::jsonb,
  p_opt text default null,
  p_ai_permitted boolean default true,
  p_history_limit integer default 20,
  p_knowledge_top_k integer default 0
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_state jsonb := public.ingest_inbound(p_advisor_id, p_customer_phone, p_customer_name,
    p_provider_sid, p_body, p_media, p_opt, p_ai_permitted, p_history_limit, p_knowledge_top_k);
begin
  if p_turn_lease is not null and (v_state ->> 'ai_allowed')::boolean then
    v_state := v_state || jsonb_build_object('turn',
      public.take_turn((v_state ->> 'conversation_id')::uuid, p_turn_lease));
  end if;
  return v_state;
end
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.take_turn(uuid, interval, uuid)',
    'public.finish_turn(uuid, uuid, integer, integer)',
    'public.withhold_turn(uuid, uuid, uuid)',
    'public.receive_inbound(interval, uuid, text, text, text, text, jsonb, text, boolean, integer, integer)'
  ] loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to assistant_functions, service_role', f);
  end loop;
end
$$;

-- The burst's Redis-down fallback asked this; take_turn answers the question now.
drop function public.latest_inbound_id(uuid);
