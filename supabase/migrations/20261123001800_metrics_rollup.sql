-- Console metrics from a rollup instead of every message.
--
-- `advisor_metrics` over 7 days read every message of the window (seconds at 10^6 stored
-- messages). Message counts now accumulate per conversation and UTC hour as messages are
-- written; the metrics sum those rows. Windows are therefore whole hours: the start is
-- rounded down and the end up to the hour. Counts are kept when retention or erasure later
-- removes the messages (the rollup holds no customer data: ids and numbers only).

-- The one definition of each rule the rollup and the metrics share.
create or replace function private.activity_hour(p_at timestamptz) returns timestamptz
language sql immutable set search_path = '' as $$
  select pg_catalog.date_trunc('hour', p_at at time zone 'UTC') at time zone 'UTC'
$$;
create or replace function private.is_failed_send(p_direction text, p_status text) returns boolean
language sql immutable set search_path = '' as $$
  select p_direction = 'outbound' and p_status in ('failed', 'undelivered')
$$;
revoke all on function private.activity_hour(timestamptz),
  private.is_failed_send(text, text) from public, anon, authenticated;
-- advisor_metrics runs as the caller and buckets its window with the same function.
grant execute on function private.activity_hour(timestamptz) to authenticated;

create table public.conversation_activity (
  conversation_id uuid not null,
  hour timestamptz not null,
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  advisor_id uuid not null references public.advisors (id) on delete cascade,
  inbound_messages integer not null default 0,
  ai_messages integer not null default 0,
  advisor_messages integer not null default 0,
  failed_sends integer not null default 0,
  primary key (conversation_id, hour)
);
comment on table public.conversation_activity is
  'Message counts per conversation and UTC hour, kept by triggers on messages; read by advisor_metrics.';
create index conversation_activity_advisor_hour_idx
  on public.conversation_activity (advisor_id, hour);
alter table public.conversation_activity enable row level security;
revoke all on public.conversation_activity from anon, authenticated, service_role;
grant select on public.conversation_activity to authenticated;
create policy "activity of visible advisors is readable" on public.conversation_activity
  for select to authenticated using (advisor_id in (select private.visible_advisor_ids()));

-- Statement level: a bulk insert costs one upsert per conversation and hour, not per row.
create or replace function private.count_new_messages() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  insert into public.conversation_activity as a (conversation_id, hour, tenant_id, advisor_id,
    inbound_messages, ai_messages, advisor_messages, failed_sends)
  select m.conversation_id, private.activity_hour(m.created_at), m.tenant_id, m.advisor_id,
    count(*) filter (where m.direction = 'inbound'),
    count(*) filter (where m.author = 'ai'),
    count(*) filter (where m.author = 'advisor'),
    count(*) filter (where private.is_failed_send(m.direction, m.status))
  from inserted m
  group by 1, 2, 3, 4
  order by 1, 2  -- one lock order for concurrent bulk inserts
  on conflict (conversation_id, hour) do update set
    inbound_messages = a.inbound_messages + excluded.inbound_messages,
    ai_messages = a.ai_messages + excluded.ai_messages,
    advisor_messages = a.advisor_messages + excluded.advisor_messages,
    failed_sends = a.failed_sends + excluded.failed_sends;
  return null;
end
$$;

-- A send counts as failed while its status says so: a resend that succeeds takes it back.
create or replace function private.count_failed_change() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  update public.conversation_activity
  set failed_sends = failed_sends
    + case when private.is_failed_send(new.direction, new.status) then 1 else -1 end
  where conversation_id = new.conversation_id and hour = private.activity_hour(new.created_at);
  return null;
end
$$;
revoke all on function private.count_new_messages(), private.count_failed_change()
  from public, anon, authenticated;

create trigger messages_count_activity after insert on public.messages
  referencing new table as inserted
  for each statement execute function private.count_new_messages();
create trigger messages_count_failed after update of status on public.messages
  for each row
  when (private.is_failed_send(old.direction, old.status)
        is distinct from private.is_failed_send(new.direction, new.status))
  execute function private.count_failed_change();

-- The messages already stored (the triggers above hold the table until this commits).
insert into public.conversation_activity (conversation_id, hour, tenant_id, advisor_id,
  inbound_messages, ai_messages, advisor_messages, failed_sends)
select m.conversation_id, private.activity_hour(m.created_at), m.tenant_id, m.advisor_id,
  count(*) filter (where m.direction = 'inbound'),
  count(*) filter (where m.author = 'ai'),
  count(*) filter (where m.author = 'advisor'),
  count(*) filter (where private.is_failed_send(m.direction, m.status))
from public.messages m
group by 1, 2, 3, 4;

-- The first advisor message after a handoff, without reading the customer's messages.
create index if not exists messages_advisor_authored_idx
  on public.messages (conversation_id, created_at) where author = 'advisor';

-- Same figures and signature as before; `conversations` and `ai_only_share` now come from
-- the rollup, handoffs and their response times from ai_runs (few rows, indexed).
create or replace function public.advisor_metrics(p_from timestamptz, p_to timestamptz)
returns table (
  advisor_id uuid,
  advisor_name text,
  inbound_messages bigint,
  conversations bigint,
  ai_only_share numeric,
  handoffs bigint,
  median_first_response_seconds numeric,
  failed_sends bigint
)
language sql stable security invoker set search_path = '' as $$
  with bounds as (
    select private.activity_hour(p_from) as from_hour,
      private.activity_hour(p_to - interval '1 microsecond') + interval '1 hour' as to_hour
  ),
  per_conversation as (
    select a.advisor_id, a.conversation_id,
      sum(a.inbound_messages) as inbound,
      sum(a.failed_sends) as failed,
      sum(a.ai_messages) > 0 as ai_replied,
      sum(a.advisor_messages) > 0 as advisor_wrote
    from public.conversation_activity a, bounds b
    where a.hour >= b.from_hour and a.hour < b.to_hour
    group by a.advisor_id, a.conversation_id
  ),
  handoff as (
    select r.advisor_id, r.conversation_id,
      extract(epoch from (
        select min(m.created_at) from public.messages m
        where m.conversation_id = r.conversation_id and m.author = 'advisor'
          and m.created_at > r.created_at
      ) - r.created_at) as response_seconds
    from public.ai_runs r, bounds b
    where r.outcome = 'handoff' and r.created_at >= b.from_hour and r.created_at < b.to_hour
  ),
  per_advisor as (
    select c.advisor_id,
      sum(c.inbound) as inbound_messages,
      count(*) as conversations,
      count(*) filter (where c.ai_replied and not c.advisor_wrote
                         and c.conversation_id not in (select h.conversation_id from handoff h))
        as ai_only,
      sum(c.failed) as failed_sends
    from per_conversation c
    group by c.advisor_id
  ),
  handoffs as (
    select h.advisor_id, count(*) as handoffs,
      percentile_cont(0.5) within group (order by h.response_seconds) as median_seconds
    from handoff h
    group by h.advisor_id
  )
  select a.id, a.name,
    coalesce(p.inbound_messages, 0)::bigint,
    coalesce(p.conversations, 0)::bigint,
    round(p.ai_only::numeric / nullif(p.conversations, 0), 3),
    coalesce(h.handoffs, 0)::bigint,
    round(h.median_seconds::numeric, 1),
    coalesce(p.failed_sends, 0)::bigint
  from public.advisors a
  left join per_advisor p on p.advisor_id = a.id
  left join handoffs h on h.advisor_id = a.id
  order by a.name
$$;
comment on function public.advisor_metrics(timestamptz, timestamptz) is
  'Console metrics per visible advisor for the whole UTC hours covering [p_from, p_to); runs as the caller.';
