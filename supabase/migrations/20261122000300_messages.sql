-- Messages, AI runs, unrouted inbound, and status callbacks that beat their message.

create table public.messages (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  advisor_id uuid not null references public.advisors (id) on delete cascade,
  conversation_id uuid not null references public.conversations (id) on delete cascade,
  direction text not null check (direction in ('inbound', 'outbound')),
  author text not null check (author in ('customer', 'ai', 'advisor', 'system')),
  body text,
  media jsonb not null default '[]'::jsonb,
  transcript text,
  provider_sid text unique,
  status text not null check (status in (
    'received', 'queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'undelivered')),
  error_code integer,
  error_message text,
  -- Inbound: when the assistant's turn for this message was taken (answered or deliberately not).
  handled_at timestamptz,
  -- Outbound: send attempts, for the recovery sweep's backoff and limit.
  attempts integer not null default 0,
  -- clock_timestamp: several rows written in one transaction keep their order.
  created_at timestamptz not null default clock_timestamp(),
  updated_at timestamptz not null default clock_timestamp()
);
comment on table public.messages is
  'Every WhatsApp message in or out. provider_sid is Twilio''s MessageSid (unique: dedup).';
create index messages_conversation_recent_idx on public.messages (conversation_id, created_at desc);
create index messages_advisor_idx on public.messages (advisor_id, created_at desc);
create index messages_tenant_created_idx on public.messages (tenant_id, created_at);
create index messages_unhandled_idx on public.messages (created_at)
  where direction = 'inbound' and handled_at is null;
alter table public.messages enable row level security;

create trigger messages_touch before update on public.messages
  for each row execute function private.touch_updated_at();

-- Sending goes through the send function; dashboards only read.
revoke all on public.messages from anon;
revoke insert, update, delete on public.messages from authenticated;
create policy "visible messages are readable" on public.messages
  for select to authenticated using (advisor_id in (select private.visible_advisor_ids()));

create table public.ai_runs (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  advisor_id uuid not null references public.advisors (id) on delete cascade,
  conversation_id uuid not null references public.conversations (id) on delete cascade,
  inbound_message_id uuid references public.messages (id) on delete set null,
  model text not null,
  prompt_tokens integer,
  completion_tokens integer,
  latency_ms integer,
  outcome text not null check (outcome in ('replied', 'handoff', 'error', 'timeout')),
  error text,
  created_at timestamptz not null default now()
);
comment on table public.ai_runs is 'One model call: what it cost, how long it took, how it ended.';
create index ai_runs_conversation_idx on public.ai_runs (conversation_id, created_at desc);
create index ai_runs_advisor_idx on public.ai_runs (advisor_id);
create index ai_runs_created_idx on public.ai_runs (created_at);
alter table public.ai_runs enable row level security;
revoke all on public.ai_runs from anon;
revoke insert, update, delete on public.ai_runs from authenticated;
create policy "visible ai runs are readable" on public.ai_runs
  for select to authenticated using (advisor_id in (select private.visible_advisor_ids()));

create table public.unrouted_messages (
  id uuid primary key default gen_random_uuid(),
  provider_sid text unique,
  to_number text not null,
  from_number text not null,
  payload jsonb not null,
  created_at timestamptz not null default now()
);
comment on table public.unrouted_messages is
  'Inbound messages to numbers with no active advisor: kept raw so nothing is dropped.';
create index unrouted_created_idx on public.unrouted_messages (created_at);
alter table public.unrouted_messages enable row level security;
-- No policy: only the service side reads these.
revoke all on public.unrouted_messages from anon, authenticated;

create table public.early_status_callbacks (
  provider_sid text primary key,
  status text not null,
  error_code integer,
  error_message text,
  received_at timestamptz not null default now()
);
comment on table public.early_status_callbacks is
  'Status callbacks that arrived before their outbound message was recorded; applied on insert.';
alter table public.early_status_callbacks enable row level security;
revoke all on public.early_status_callbacks from anon, authenticated;
