-- The advisor console: what it reads that no table holds yet.
--
-- * Tenant settings (templates shared by every advisor of the business); an advisor's own
--   `settings.templates` come first.
-- * Metrics per advisor over a time range, computed as the caller: RLS decides which advisors
--   appear, so an advisor sees their own row and a tenant admin every advisor of the tenant.
-- * The indexes the metrics and the console's catch-up queries use.

alter table public.tenants add column if not exists settings jsonb not null default '{}'::jsonb;
alter table public.tenants add constraint tenants_settings_valid check (
  jsonb_typeof(settings) = 'object' and length(settings::text) <= 20000);
comment on column public.tenants.settings is
  'Tenant-wide console settings: templates [{name, content_sid, variables}].';
grant update (settings) on public.tenants to authenticated;

-- Handoffs per advisor and time; the catch-up after a reconnect asks "changed since".
create index if not exists ai_runs_advisor_created_idx
  on public.ai_runs (advisor_id, created_at) where outcome = 'handoff';
create index if not exists conversations_advisor_updated_idx
  on public.conversations (advisor_id, updated_at);
create index if not exists messages_conversation_updated_idx
  on public.messages (conversation_id, updated_at);

-- One row per advisor the caller may see, for [p_from, p_to):
--   inbound_messages   customer messages received;
--   conversations      conversations with any message;
--   ai_only_share      share of those the AI answered with no advisor message and no handoff;
--   handoffs           the model's handoff_to_human calls;
--   median_first_response_seconds  median time from a handoff to the advisor's next message;
--   failed_sends       outbound messages that ended failed or undelivered.
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
  with per_conversation as (
    select m.advisor_id, m.conversation_id,
      count(*) filter (where m.direction = 'inbound') as inbound,
      count(*) filter (where m.status in ('failed', 'undelivered')
                         and m.direction = 'outbound') as failed,
      bool_or(m.author = 'ai') as ai_replied,
      bool_or(m.author = 'advisor') as advisor_wrote
    from public.messages m
    where m.created_at >= p_from and m.created_at < p_to
    group by m.advisor_id, m.conversation_id
  ),
  handoff as (
    select r.advisor_id, r.conversation_id,
      extract(epoch from (
        select min(m.created_at) from public.messages m
        where m.conversation_id = r.conversation_id and m.author = 'advisor'
          and m.created_at > r.created_at
      ) - r.created_at) as response_seconds
    from public.ai_runs r
    where r.outcome = 'handoff' and r.created_at >= p_from and r.created_at < p_to
  ),
  per_advisor as (
    select c.advisor_id,
      sum(c.inbound) as inbound_messages,
      count(*) as conversations,
      count(*) filter (where c.ai_replied and not c.advisor_wrote and not exists (
        select 1 from handoff h where h.conversation_id = c.conversation_id)) as ai_only,
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
  'Console metrics per visible advisor for [p_from, p_to); runs as the caller, so RLS applies.';
revoke all on function public.advisor_metrics(timestamptz, timestamptz) from public, anon;
grant execute on function public.advisor_metrics(timestamptz, timestamptz) to authenticated;
