-- Console metrics from counters per advisor and hour, summable over any window.
--
-- The per-conversation rollup (20261123001800) still had to group a window's rows by
-- conversation, because "distinct conversations" and "AI-only conversations" do not add up
-- across hours: with many short conversations that grouping cost more than the messages saved.
-- Conversations are now counted as WhatsApp counts them, by customer service window: a customer
-- message opens a *session* when the customer's previous message is more than 24 hours older
-- (or there is none). A session belongs to the hour it opened, so sessions add up; whether it
-- stayed with the AI alone is settled as it goes (the AI replied, no advisor wrote, no handoff)
-- and corrected in its opening hour's counter. Counts outlive retention and erasure (ids and
-- numbers only), as before. Messages are counted in the order they are written.

create or replace function private.opens_session(p_previous_inbound timestamptz, p_at timestamptz)
returns boolean language sql immutable set search_path = '' as $$
  select p_previous_inbound is null or p_at - p_previous_inbound > interval '24 hours'
$$;
revoke all on function private.opens_session(timestamptz, timestamptz)
  from public, anon, authenticated;

create table public.advisor_activity (
  advisor_id uuid not null references public.advisors (id) on delete cascade,
  hour timestamptz not null,
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  inbound_messages integer not null default 0,
  sessions integer not null default 0,
  ai_only_sessions integer not null default 0,
  failed_sends integer not null default 0,
  primary key (advisor_id, hour)
);
comment on table public.advisor_activity is
  'Per advisor and UTC hour: customer messages, sessions opened, sessions the AI alone handled, failed sends. Kept by triggers; read by advisor_metrics.';
alter table public.advisor_activity enable row level security;
revoke all on public.advisor_activity from anon, authenticated, service_role;
grant select on public.advisor_activity to authenticated;
create policy "activity of visible advisors is readable" on public.advisor_activity
  for select to authenticated using (advisor_id in (select private.visible_advisor_ids()));

-- Each conversation's current session, the state the counters are corrected from.
create table private.service_sessions (
  conversation_id uuid primary key references public.conversations (id) on delete cascade,
  advisor_id uuid not null,
  tenant_id uuid not null,
  opened_at timestamptz not null,
  last_inbound_at timestamptz not null,
  ai_replied boolean not null default false,
  human_involved boolean not null default false
);
revoke all on private.service_sessions from public, anon, authenticated, service_role;

-- Count the given messages (one statement's, or every stored one for the backfill).
-- It runs once per inserted statement, nearly always for one message: PL/pgSQL keeps one
-- generic plan per session (planning it anew for each call cost four times its execution).
create or replace function private.count_messages(p_message_ids uuid[]) returns void
language plpgsql security definer set search_path = '' set plan_cache_mode = force_generic_plan
as $$
begin
  with ordered as (
    -- Does each customer message open a session? Its predecessor is the previous customer
    -- message among these, else the stored session's last one.
    select m.id, m.conversation_id, m.advisor_id, m.tenant_id, m.direction, m.author, m.status,
      m.created_at,
      m.direction = 'inbound' and private.opens_session(coalesce(
        max(m.created_at) filter (where m.direction = 'inbound') over earlier,
        s.last_inbound_at), m.created_at) as opens,
      s.opened_at as stored_opened_at, s.last_inbound_at as stored_last,
      s.ai_replied as stored_ai, s.human_involved as stored_human
    from unnest(p_message_ids) as given (id)
    join public.messages m on m.id = given.id
    left join private.service_sessions s on s.conversation_id = m.conversation_id
    window earlier as (partition by m.conversation_id order by m.created_at, m.id
                       rows between unbounded preceding and 1 preceding)
  ),
  placed as (  -- each message with the opening of the session it belongs to (null: none yet)
    select o.*, coalesce(max(o.created_at) filter (where o.opens) over upto, o.stored_opened_at)
      as session_opened_at
    from ordered o
    window upto as (partition by o.conversation_id order by o.created_at, o.id
                    rows unbounded preceding)
  ),
  touched as (  -- each session these messages touch, as stored before them (new: nothing)
    select p.conversation_id, p.advisor_id, p.tenant_id, p.session_opened_at as opened_at,
      bool_or(p.opens) as new,
      max(p.created_at) filter (where p.direction = 'inbound') as last_inbound_at,
      bool_or(p.author = 'ai') as ai, bool_or(p.author = 'advisor') as human,
      not bool_or(p.opens) and coalesce(p.stored_ai, false) as ai_before,
      not bool_or(p.opens) and coalesce(p.stored_human, false) as human_before,
      p.stored_last
    from placed p
    where p.session_opened_at is not null
    group by p.conversation_id, p.advisor_id, p.tenant_id, p.session_opened_at,
      p.stored_ai, p.stored_human, p.stored_last
  ),
  settled as (
    select t.*, t.ai_before or t.ai as ai_after, t.human_before or t.human as human_after
    from touched t
  ),
  saved as (
    insert into private.service_sessions as s (conversation_id, advisor_id, tenant_id, opened_at,
      last_inbound_at, ai_replied, human_involved)
    select distinct on (x.conversation_id) x.conversation_id, x.advisor_id, x.tenant_id,
      x.opened_at, coalesce(x.last_inbound_at, x.stored_last), x.ai_after, x.human_after
    from settled x
    order by x.conversation_id, x.opened_at desc
    on conflict (conversation_id) do update set
      opened_at = excluded.opened_at, last_inbound_at = excluded.last_inbound_at,
      ai_replied = excluded.ai_replied, human_involved = excluded.human_involved
  ),
  deltas as (
    select m.advisor_id, m.tenant_id, private.activity_hour(m.created_at) as hour,
      (m.direction = 'inbound')::int as inbound, 0 as sessions, 0 as ai_only,
      private.is_failed_send(m.direction, m.status)::int as failed
    from ordered m
    union all
    select x.advisor_id, x.tenant_id, private.activity_hour(x.opened_at), 0,
      x.new::int,
      (x.ai_after and not x.human_after)::int - (x.ai_before and not x.human_before)::int, 0
    from settled x
  )
  insert into public.advisor_activity as a (advisor_id, hour, tenant_id, inbound_messages,
    sessions, ai_only_sessions, failed_sends)
  select d.advisor_id, d.hour, d.tenant_id, sum(d.inbound), sum(d.sessions), sum(d.ai_only),
    sum(d.failed)
  from deltas d
  group by d.advisor_id, d.hour, d.tenant_id
  order by d.advisor_id, d.hour  -- one lock order for concurrent writers
  on conflict (advisor_id, hour) do update set
    inbound_messages = a.inbound_messages + excluded.inbound_messages,
    sessions = a.sessions + excluded.sessions,
    ai_only_sessions = a.ai_only_sessions + excluded.ai_only_sessions,
    failed_sends = a.failed_sends + excluded.failed_sends;
end
$$;

create or replace function private.count_inserted_messages() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  perform private.count_messages(array(select i.id from inserted i));
  return null;
end
$$;

-- A send counts as failed while its status says so: a resend that succeeds takes it back.
create or replace function private.count_failed_status() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  update public.advisor_activity
  set failed_sends = failed_sends
    + case when private.is_failed_send(new.direction, new.status) then 1 else -1 end
  where advisor_id = new.advisor_id and hour = private.activity_hour(new.created_at);
  return null;
end
$$;

-- A handoff brings a human into the conversation's current session.
create or replace function private.count_handoff() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
  with marked as (
    update private.service_sessions s set human_involved = true
    where s.conversation_id = new.conversation_id and not s.human_involved
    returning s.advisor_id, s.opened_at, s.ai_replied
  )
  update public.advisor_activity a set ai_only_sessions = a.ai_only_sessions - 1
  from marked m
  where m.ai_replied and a.advisor_id = m.advisor_id
    and a.hour = private.activity_hour(m.opened_at);
  return null;
end
$$;
revoke all on function private.count_messages(uuid[]), private.count_inserted_messages(),
  private.count_failed_status(), private.count_handoff() from public, anon, authenticated;

-- The per-conversation rollup goes; these counters replace it.
drop trigger messages_count_activity on public.messages;
drop trigger messages_count_failed on public.messages;
drop function private.count_new_messages();
drop function private.count_failed_change();
drop table public.conversation_activity;

create trigger messages_count_activity after insert on public.messages
  referencing new table as inserted
  for each statement execute function private.count_inserted_messages();
create trigger messages_count_failed after update of status on public.messages
  for each row
  when (private.is_failed_send(old.direction, old.status)
        is distinct from private.is_failed_send(new.direction, new.status))
  execute function private.count_failed_status();
create trigger ai_runs_count_handoff after insert on public.ai_runs
  for each row when (new.outcome = 'handoff')
  execute function private.count_handoff();

-- The messages already stored, then the handoffs already recorded (the triggers above hold
-- both tables until this commits). Only each conversation's current session is kept, so a
-- handoff counts against that one: older sessions' handoffs are not revisited here.
select private.count_messages(array(select m.id from public.messages m));
with handed as (
  update private.service_sessions s set human_involved = true
  where not s.human_involved and exists (
    select 1 from public.ai_runs r
    where r.conversation_id = s.conversation_id and r.outcome = 'handoff'
      and r.created_at >= s.opened_at)
  returning s.advisor_id, s.opened_at, s.ai_replied
)
update public.advisor_activity a set ai_only_sessions = a.ai_only_sessions - h.n
from (select advisor_id, opened_at, count(*) filter (where ai_replied) as n
      from handed group by 1, 2) h
where a.advisor_id = h.advisor_id and a.hour = private.activity_hour(h.opened_at);

-- Same signature; conversations are now sessions, and every figure but the handoffs' comes
-- from advisors x hours rows.
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
  activity as (
    select a.advisor_id, sum(a.inbound_messages) as inbound_messages, sum(a.sessions) as sessions,
      sum(a.ai_only_sessions) as ai_only, sum(a.failed_sends) as failed_sends
    from public.advisor_activity a, bounds b
    where a.hour >= b.from_hour and a.hour < b.to_hour
    group by a.advisor_id
  ),
  handoffs as (
    select r.advisor_id, count(*) as handoffs,
      percentile_cont(0.5) within group (order by extract(epoch from (
        select min(m.created_at) from public.messages m
        where m.conversation_id = r.conversation_id and m.author = 'advisor'
          and m.created_at > r.created_at
      ) - r.created_at)) as median_seconds
    from public.ai_runs r, bounds b
    where r.outcome = 'handoff' and r.created_at >= b.from_hour and r.created_at < b.to_hour
    group by r.advisor_id
  )
  select a.id, a.name,
    coalesce(x.inbound_messages, 0)::bigint,
    coalesce(x.sessions, 0)::bigint,
    round(x.ai_only::numeric / nullif(x.sessions, 0), 3),
    coalesce(h.handoffs, 0)::bigint,
    round(h.median_seconds::numeric, 1),
    coalesce(x.failed_sends, 0)::bigint
  from public.advisors a
  left join activity x on x.advisor_id = a.id
  left join handoffs h on h.advisor_id = a.id
  order by a.name
$$;
comment on function public.advisor_metrics(timestamptz, timestamptz) is
  'Console metrics per visible advisor for the whole UTC hours covering [p_from, p_to); conversations are customer service sessions (24 h); runs as the caller.';
