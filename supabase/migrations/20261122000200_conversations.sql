-- Conversations: one thread per advisor + customer phone, never shared between advisors.

create table public.conversations (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  advisor_id uuid not null references public.advisors (id) on delete cascade,
  customer_phone text not null check (customer_phone ~ '^\+?[0-9]{6,15}$'),
  customer_name text,
  -- The AI answers while ai_attention is true and no human override is running.
  ai_attention boolean not null default true,
  -- A human took over until this time (advisor wrote, or handoff); expiry returns the AI.
  human_override_until timestamptz,
  -- Set when the advisor turned the AI off for good: expiry never returns it.
  ai_disabled_at timestamptz,
  handoff_reason text,
  -- Flag for the dashboard: something needs a person (AI failed, handoff asked).
  needs_human boolean not null default false,
  audio_available boolean not null default false,
  status text not null default 'open' check (status in ('open', 'pending', 'closed')),
  opted_out_at timestamptz,
  last_inbound_at timestamptz,
  last_message_at timestamptz,
  last_message_preview text,
  unread_count integer not null default 0 check (unread_count >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (advisor_id, customer_phone)
);
comment on table public.conversations is
  'One WhatsApp thread between a customer and one advisor, with the AI/human handoff state.';
create index conversations_advisor_recent_idx
  on public.conversations (advisor_id, last_message_at desc nulls last);
create index conversations_tenant_idx on public.conversations (tenant_id);
create index conversations_override_idx on public.conversations (human_override_until)
  where human_override_until is not null;
alter table public.conversations enable row level security;

create trigger conversations_touch before update on public.conversations
  for each row execute function private.touch_updated_at();

-- Dashboards read what they may see and change only the handoff and inbox fields.
revoke all on public.conversations from anon;
revoke insert, update, delete on public.conversations from authenticated;
grant update (ai_attention, human_override_until, ai_disabled_at, audio_available, status,
  unread_count, needs_human) on public.conversations to authenticated;

create policy "visible conversations are readable" on public.conversations
  for select to authenticated using (advisor_id in (select private.visible_advisor_ids()));
create policy "visible conversations take handoff changes" on public.conversations
  for update to authenticated
  using (advisor_id in (select private.visible_advisor_ids()))
  with check (advisor_id in (select private.visible_advisor_ids()));
