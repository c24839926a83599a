-- Conversation quality: the handoff carries a summary for the advisor, returning to the AI is
-- recorded, dashboards mark a conversation read, cached prompt tokens are recorded, and the
-- history the model sees only grows between trims (so the provider can cache the prompt).
-- (The functions that return the history and commit the summary are redefined, with the
-- knowledge base, in 20261123001600_knowledge.sql.)

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
