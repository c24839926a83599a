-- Realtime for dashboards is read-only: only the database broadcasts to advisor topics.
--
-- Clients could publish to any advisor topic they could see (fake "new message" events); the
-- database's own broadcasts need no policy. Reading binds the row's own topic to the channel
-- being joined, and both to the advisors the user may see.

drop policy if exists "advisor topics accept broadcasts from who sees the advisor"
  on realtime.messages;
drop policy if exists "advisor topics are readable by who sees the advisor" on realtime.messages;

create policy "advisor topics are readable by who sees the advisor" on realtime.messages
  for select to authenticated
  using (
    realtime.messages.extension = 'broadcast'
    and realtime.messages.topic = (select realtime.topic())
    and realtime.messages.topic in (
      select 'advisor:' || v from private.visible_advisor_ids() v)
  );
