-- Letting go of a conversation's turn is one rule, written once: only the holder's own token
-- lets go, and the row stays (held_until = -infinity, a HOT update of one row). finish_turn and
-- withhold_turn each wrote it out; both now call private.release_turn. Signatures, grants and
-- behaviour are unchanged.
create function private.release_turn(p_conversation_id uuid, p_token uuid) returns void
language sql set search_path = '' as $$
  update private.turn_holders set held_until = '-infinity'
  where conversation_id = p_conversation_id and token = p_token;
$$;
revoke all on function private.release_turn(uuid, uuid) from public, anon, authenticated;

create or replace function public.finish_turn(
  p_conversation_id uuid, p_token uuid, p_history_limit integer default 20,
  p_knowledge_top_k integer default 0
) returns jsonb
language plpgsql security definer set search_path = '' as $$
begin
  -- The release needs no durability (lost in a crash, the turn lapses).
  perform set_config('synchronous_commit', 'off', true);
  perform private.release_turn(p_conversation_id, p_token);
  return public.pending_turn(p_conversation_id, p_history_limit, p_knowledge_top_k);
end
$$;

create or replace function public.withhold_turn(p_conversation_id uuid, p_message_id uuid,
  p_token uuid)
returns void
language sql security definer set search_path = '' as $$
  update public.messages set handled_at = now()
  where id = p_message_id and conversation_id = p_conversation_id and direction = 'inbound'
    and handled_at is null;
  select private.release_turn(p_conversation_id, p_token);
$$;
