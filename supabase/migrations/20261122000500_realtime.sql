-- Realtime for dashboards: every message and conversation change is broadcast from the
-- database to the private topic advisor:<advisor_id>; only users who may see that advisor
-- can join it. The tables are also in the supabase_realtime publication (Postgres Changes).

create or replace function private.broadcast_to_advisor() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform realtime.broadcast_changes(
    'advisor:' || coalesce(new.advisor_id, old.advisor_id)::text,
    tg_op, tg_op, tg_table_name, tg_table_schema, new, old);
  return null;
end
$$;

create trigger messages_broadcast_insert after insert on public.messages
  for each row execute function private.broadcast_to_advisor();
-- Bookkeeping columns (handled_at, lease_until, attempts) change nothing a dashboard shows.
create trigger messages_broadcast_update after update on public.messages
  for each row
  when (old.status is distinct from new.status
        or old.error_code is distinct from new.error_code
        or old.provider_sid is distinct from new.provider_sid
        or old.body is distinct from new.body
        or old.media is distinct from new.media
        or old.transcript is distinct from new.transcript)
  execute function private.broadcast_to_advisor();
create trigger conversations_broadcast after insert or update on public.conversations
  for each row execute function private.broadcast_to_advisor();

-- A user receives (select) and may send (insert) broadcasts only on topics of advisors they see.
create policy "advisor topics are readable by who sees the advisor" on realtime.messages
  for select to authenticated
  using (
    realtime.messages.extension = 'broadcast'
    and (select realtime.topic()) in (
      select 'advisor:' || v from private.visible_advisor_ids() v)
  );
create policy "advisor topics accept broadcasts from who sees the advisor" on realtime.messages
  for insert to authenticated
  with check (
    realtime.messages.extension = 'broadcast'
    and (select realtime.topic()) in (
      select 'advisor:' || v from private.visible_advisor_ids() v)
  );

alter publication supabase_realtime add table public.conversations, public.messages;
