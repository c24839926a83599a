-- Data rights and audit.
--
-- * audit_events: who did what in a tenant, written by the database itself (triggers and the
--   SQL functions), readable by the tenant's admins, never changed through the API.
-- * Export and erase one customer of a tenant (the send function's /customers/export and
--   /customers/erase, tenant admins only). An erasure is resumable: erasure_requests tracks
--   it by conversation ids (never the customer's number), Storage and Twilio media go first,
--   then every row goes in one transaction.

-- -- Audit ------------------------------------------------------------------------------------
create table public.audit_events (
  id bigint generated always as identity primary key,
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  actor_user_id uuid,  -- null: the system (the functions acting on their own)
  action text not null,
  target_type text not null,
  target_id text,
  details jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now()
);
comment on table public.audit_events is
  'Who did what in a tenant; written by triggers and SQL functions only. Holds ids, never customer text.';
create index audit_events_tenant_created_idx on public.audit_events (tenant_id, created_at desc);
create index audit_events_created_idx on public.audit_events (created_at);
alter table public.audit_events enable row level security;
revoke all on public.audit_events from anon, authenticated, service_role;
grant select on public.audit_events to authenticated;
create policy "admins read their tenant's audit" on public.audit_events
  for select to authenticated using (tenant_id in (select private.admin_tenant_ids()));

-- Append-only for everyone, owner included; only retention deletes.
create or replace function private.refuse_audit_change() returns trigger
language plpgsql set search_path = '' as $$
begin
  raise exception 'audit events cannot be changed' using errcode = '42501';
end
$$;
create trigger audit_events_append_only before update on public.audit_events
  for each row execute function private.refuse_audit_change();

-- The one writer of audit rows. The actor is the request's user: the Data API sets the
-- claims, and the functions set them for the user whose token they verified.
create or replace function private.audit(
  p_tenant_id uuid, p_action text, p_target_type text, p_target_id text,
  p_details jsonb default '{}'::jsonb, p_actor uuid default null
) returns void
language plpgsql security definer set search_path = '' as $$
begin
  -- A tenant being deleted takes its audit with it; its cascading deletes record nothing.
  if not exists (select 1 from public.tenants t where t.id = p_tenant_id) then
    return;
  end if;
  insert into public.audit_events (tenant_id, actor_user_id, action, target_type, target_id, details)
  values (p_tenant_id, coalesce(p_actor, (select auth.uid())), p_action, p_target_type,
          p_target_id, coalesce(p_details, '{}'::jsonb));
end
$$;

-- Row changes of people, settings and knowledge. Arguments: action on insert, on update, on
-- delete ('' for none), then the columns whose values the event keeps (comma-separated).
-- Updates keep the names of the changed columns.
create or replace function private.audit_row_change() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  v_row jsonb := to_jsonb(coalesce(new, old));
  v_action text := tg_argv[case tg_op when 'INSERT' then 0 when 'UPDATE' then 1 else 2 end];
  v_details jsonb := '{}'::jsonb;
  v_changed jsonb;
begin
  if v_action = '' then
    return null;
  end if;
  if tg_op = 'UPDATE' then
    select coalesce(jsonb_agg(n.key order by n.key), '[]'::jsonb) into v_changed
    from jsonb_each(to_jsonb(new)) n
    where n.value is distinct from to_jsonb(old) -> n.key and n.key <> 'updated_at';
    if v_changed = '[]'::jsonb then
      return null;
    end if;
    v_details := jsonb_build_object('changed', v_changed);
  end if;
  select v_details || coalesce(jsonb_object_agg(k, v_row -> k), '{}'::jsonb) into v_details
  from unnest(string_to_array(nullif(tg_argv[3], ''), ',')) k;
  perform private.audit(
    coalesce((v_row ->> 'tenant_id')::uuid, (v_row ->> 'id')::uuid), v_action,
    tg_argv[4], coalesce(v_row ->> 'id', v_row ->> 'user_id'), v_details);
  return null;
end
$$;

create trigger advisors_audit after insert or update or delete on public.advisors
  for each row execute function private.audit_row_change(
    'advisor.added', 'advisor.changed', 'advisor.removed', 'name,user_id', 'advisor');
create trigger tenant_members_audit after insert or update or delete on public.tenant_members
  for each row execute function private.audit_row_change(
    'member.added', 'member.changed', 'member.removed', 'role', 'user');
create trigger tenants_audit after update on public.tenants
  for each row execute function private.audit_row_change(
    '', 'tenant.settings_changed', '', '', 'tenant');
create trigger knowledge_sources_audit after insert or delete on public.knowledge_sources
  for each row execute function private.audit_row_change(
    'knowledge.uploaded', '', 'knowledge.deleted', 'title,advisor_id', 'knowledge_source');
create trigger messages_audit_advisor_send after insert on public.messages
  for each row when (new.author = 'advisor')
  execute function private.audit_row_change(
    'advisor.message_sent', '', '', 'conversation_id,advisor_id', 'message');

-- Who paused or resumed the AI. Only people: the model's own handoffs are in ai_runs.
create or replace function private.audit_ai_control() returns trigger
language plpgsql security definer set search_path = '' as $$
declare
  v_action text;
begin
  if (select auth.uid()) is null then
    return null;
  end if;
  v_action := case
    when new.ai_disabled_at is not null and old.ai_disabled_at is null then 'ai.turned_off'
    when new.ai_attention and not old.ai_attention then 'ai.resumed'
    when old.ai_attention and not new.ai_attention then 'conversation.taken_over'
    when new.ai_disabled_at is null and old.ai_disabled_at is not null then 'ai.resumed'
  end;
  if v_action is not null then
    perform private.audit(new.tenant_id, v_action, 'conversation', new.id::text,
      jsonb_build_object('advisor_id', new.advisor_id));
  end if;
  return null;
end
$$;
create trigger conversations_audit_ai_control after update of ai_attention, ai_disabled_at
  on public.conversations
  for each row
  when (old.ai_attention is distinct from new.ai_attention
        or old.ai_disabled_at is distinct from new.ai_disabled_at)
  execute function private.audit_ai_control();

create or replace function public.purge_audit_events(p_cutoff timestamptz, p_limit integer)
returns integer
language sql security definer set search_path = '' as $$
  with batch as (
    select id from public.audit_events where created_at < p_cutoff order by created_at
    limit p_limit
  ),
  deleted as (
    delete from public.audit_events a using batch where a.id = batch.id returning 1
  )
  select count(*)::integer from deleted
$$;

-- -- One customer of a tenant -----------------------------------------------------------------

-- The tenant a member with one of p_roles acts on: the one named, or their only such tenant.
-- One rule for the knowledge base (admins and supervisors) and data rights (admins).
create or replace function private.acting_tenant(
  p_user_id uuid, p_tenant_id uuid, p_roles text[], p_refusal text
) returns uuid
language plpgsql stable set search_path = '' as $$
declare
  v_tenant uuid := p_tenant_id;
  v_count integer;
begin
  if v_tenant is null then
    select min(m.tenant_id::text)::uuid, count(*) into v_tenant, v_count
    from public.tenant_members m where m.user_id = p_user_id and m.role = any(p_roles);
    if v_count > 1 then
      raise exception 'member of several tenants: name the tenant_id' using errcode = '22023';
    end if;
  end if;
  if v_tenant is null or not exists (
    select 1 from public.tenant_members m
    where m.user_id = p_user_id and m.tenant_id = v_tenant and m.role = any(p_roles)
  ) then
    raise exception '%', p_refusal using errcode = '42501';
  end if;
  return v_tenant;
end
$$;

create or replace function private.admin_tenant(p_user_id uuid, p_tenant_id uuid) returns uuid
language sql stable set search_path = '' as $$
  select private.acting_tenant(p_user_id, p_tenant_id, array['admin'],
    'only tenant admins export or erase customer data')
$$;

-- Same signature and answers as before, except an admin of several tenants who names none
-- now hears so (422) instead of a refusal.
create or replace function private.knowledge_tenant(
  p_user_id uuid, p_tenant_id uuid, p_advisor_id uuid
) returns uuid
language plpgsql stable set search_path = '' as $$
declare
  v_tenant uuid := p_tenant_id;
begin
  if p_advisor_id is not null then
    select a.tenant_id into v_tenant from public.advisors a where a.id = p_advisor_id;
    if v_tenant is null or (p_tenant_id is not null and p_tenant_id <> v_tenant) then
      raise exception 'unknown advisor %', p_advisor_id using errcode = 'P0002';
    end if;
  end if;
  return private.acting_tenant(p_user_id, v_tenant, array['admin', 'supervisor'],
    'only tenant admins and supervisors manage knowledge');
end
$$;

-- Storage paths a message's media items point at (inbound files and voice replies).
create or replace function private.media_paths(p_media jsonb) returns setof text
language sql immutable set search_path = '' as $$
  select item ->> 'path' from jsonb_array_elements(coalesce(p_media, '[]'::jsonb)) item
  where item ? 'path'
$$;

-- Retention reads media paths with the same rule.
create or replace function public.expired_messages(
  p_tenant_id uuid, p_cutoff timestamptz, p_limit integer
) returns jsonb
language sql stable security definer set search_path = '' as $$
  with batch as (
    select id, media from public.messages
    where tenant_id = p_tenant_id and created_at < p_cutoff
    order by created_at limit p_limit
  )
  select jsonb_build_object(
    'ids', (select coalesce(jsonb_agg(id), '[]'::jsonb) from batch),
    'media_paths', (select coalesce(jsonb_agg(p), '[]'::jsonb)
                    from batch, private.media_paths(batch.media) p))
$$;

create or replace function private.customer_conversation_ids(p_tenant_id uuid, p_phone text)
returns uuid[]
language sql stable set search_path = '' as $$
  select coalesce(array_agg(c.id order by c.created_at), '{}')
  from public.conversations c where c.tenant_id = p_tenant_id and c.customer_phone = p_phone
$$;

create or replace function public.export_customer(
  p_user_id uuid, p_tenant_id uuid, p_phone text
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_tenant uuid := private.admin_tenant(p_user_id, p_tenant_id);
  v_ids uuid[] := private.customer_conversation_ids(v_tenant, p_phone);
  v_export jsonb;
begin
  select jsonb_build_object(
    'customer_phone', p_phone,
    'tenant_id', v_tenant,
    'exported_at', now(),
    'conversations', coalesce(jsonb_agg(jsonb_build_object(
      'id', c.id, 'advisor_id', c.advisor_id, 'advisor_name', a.name,
      'customer_name', c.customer_name, 'status', c.status, 'created_at', c.created_at,
      'last_message_at', c.last_message_at, 'opted_out_at', c.opted_out_at,
      'ai_disabled_at', c.ai_disabled_at,
      'handoff', case when c.handoff_at is null and c.handoff_reason is null then null
        else jsonb_build_object('at', c.handoff_at, 'reason', c.handoff_reason,
                                'summary', c.handoff_summary) end,
      'messages', (
        select coalesce(jsonb_agg(jsonb_build_object(
          'id', m.id, 'direction', m.direction, 'author', m.author, 'body', m.body,
          'transcript', m.transcript, 'status', m.status, 'error_code', m.error_code,
          'error_message', m.error_message, 'created_at', m.created_at,
          'media', (select coalesce(jsonb_agg(item - 'url' - 'twilio_url'), '[]'::jsonb)
                    from jsonb_array_elements(coalesce(m.media, '[]'::jsonb)) item))
          order by m.created_at), '[]'::jsonb)
        from public.messages m where m.conversation_id = c.id),
      'ai_runs', (
        select coalesce(jsonb_agg(jsonb_build_object(
          'model', r.model, 'prompt_tokens', r.prompt_tokens,
          'completion_tokens', r.completion_tokens, 'cached_tokens', r.cached_tokens,
          'latency_ms', r.latency_ms, 'outcome', r.outcome, 'created_at', r.created_at)
          order by r.created_at), '[]'::jsonb)
        from public.ai_runs r where r.conversation_id = c.id),
      'handoff_alerts', (
        select coalesce(jsonb_agg(jsonb_build_object(
          'reason', al.reason, 'summary', al.summary, 'status', al.status,
          'created_at', al.created_at) order by al.created_at), '[]'::jsonb)
        from public.advisor_alerts al where al.conversation_id = c.id)
    ) order by c.created_at), '[]'::jsonb))
  into v_export
  from public.conversations c join public.advisors a on a.id = c.advisor_id
  where c.id = any(v_ids);
  perform private.audit(v_tenant, 'customer.exported', 'customer', null,
    jsonb_build_object('conversation_ids', to_jsonb(v_ids)), p_user_id);
  return v_export;
end
$$;

create table public.erasure_requests (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  requested_by uuid not null,
  conversation_ids uuid[] not null,
  status text not null default 'running' check (status in ('running', 'done')),
  counts jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  finished_at timestamptz
);
comment on table public.erasure_requests is
  'One erasure of a customer: conversation ids and counts (never the number), so a crash resumes.';
create index erasure_requests_running_idx on public.erasure_requests (tenant_id)
  where status = 'running';
alter table public.erasure_requests enable row level security;
revoke all on public.erasure_requests from anon, authenticated, service_role;

-- Step 1: the erasure to run (a running one for the same conversations is resumed) and what
-- must leave Storage and Twilio before the rows go.
create or replace function public.prepare_customer_erasure(
  p_user_id uuid, p_tenant_id uuid, p_phone text
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_tenant uuid := private.admin_tenant(p_user_id, p_tenant_id);
  v_ids uuid[] := private.customer_conversation_ids(v_tenant, p_phone);
  v_request uuid;
begin
  select r.id into v_request from public.erasure_requests r
  where r.tenant_id = v_tenant and r.status = 'running' and r.conversation_ids && v_ids
  order by r.created_at limit 1 for update;
  if found then
    update public.erasure_requests set conversation_ids = (
      select array_agg(distinct i) from unnest(conversation_ids || v_ids) i)
    where id = v_request;
  else
    insert into public.erasure_requests (tenant_id, requested_by, conversation_ids)
    values (v_tenant, p_user_id, v_ids) returning id into v_request;
  end if;
  return jsonb_build_object(
    'request_id', v_request,
    'tenant_id', v_tenant,
    'objects', private.customer_objects(v_ids),
    'twilio_media', (
      select coalesce(jsonb_agg(distinct item ->> 'twilio_url'), '[]'::jsonb)
      from public.messages m, jsonb_array_elements(coalesce(m.media, '[]'::jsonb)) item
      where m.conversation_id = any(v_ids) and m.direction = 'inbound'
        and item ? 'twilio_url'));
end
$$;

-- Every Storage object of these conversations: the paths messages name, and anything else
-- under the conversations' folders (`<tenant>/<advisor>/<conversation>/...`).
create or replace function private.customer_objects(p_ids uuid[]) returns jsonb
language sql stable set search_path = '' as $$
  select coalesce(jsonb_agg(distinct p), '[]'::jsonb) from (
    select p from public.messages m, private.media_paths(m.media) p
    where m.conversation_id = any(p_ids)
    union
    select o.name from storage.objects o
    join public.conversations c on c.id = any(p_ids)
      and o.name like c.tenant_id || '/' || c.advisor_id || '/' || c.id || '/%'
    where o.bucket_id = 'whatsapp-media'
  ) objects(p)
$$;

create or replace function public.record_erasure_progress(
  p_request_id uuid, p_storage_objects integer, p_twilio_media integer
) returns void
language sql security definer set search_path = '' as $$
  update public.erasure_requests set counts = counts || jsonb_build_object(
    'storage_objects', coalesce((counts ->> 'storage_objects')::integer, 0) + p_storage_objects,
    'twilio_media', coalesce((counts ->> 'twilio_media')::integer, 0) + p_twilio_media)
  where id = p_request_id and status = 'running'
$$;

-- Step 2, one transaction: every row of the customer in the tenant. Refused (pending) when
-- Storage holds objects the caller has not removed (media stored since step 1).
create or replace function public.finish_customer_erasure(
  p_request_id uuid, p_phone text, p_removed_objects text[]
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_request public.erasure_requests;
  v_ids uuid[];
  v_message_ids uuid[];
  v_sids text[];
  v_pending jsonb;
  v_counts jsonb := '{}'::jsonb;
  v_n integer;
begin
  select * into v_request from public.erasure_requests where id = p_request_id for update;
  if not found then
    raise exception 'unknown erasure %', p_request_id using errcode = 'P0002';
  end if;
  if v_request.status = 'done' then
    return jsonb_build_object('pending', false, 'counts', v_request.counts);
  end if;
  v_ids := (select array_agg(distinct i) from unnest(
    v_request.conversation_ids || private.customer_conversation_ids(v_request.tenant_id, p_phone)) i);
  v_ids := coalesce(v_ids, '{}');
  -- New messages wait for this erasure (the webhook locks the conversation row first).
  perform 1 from public.conversations where id = any(v_ids) for update;
  select coalesce(jsonb_agg(p), '[]'::jsonb) into v_pending
  from jsonb_array_elements_text(private.customer_objects(v_ids)) p
  where p <> all(coalesce(p_removed_objects, '{}'));
  if v_pending <> '[]'::jsonb then
    return jsonb_build_object('pending', true, 'objects', v_pending);
  end if;

  select coalesce(array_agg(id), '{}'), coalesce(array_agg(provider_sid) filter (
    where provider_sid is not null), '{}')
  into v_message_ids, v_sids
  from public.messages where conversation_id = any(v_ids);

  delete from public.send_requests where message_id = any(v_message_ids);
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('idempotency_records', v_n);
  delete from public.early_status_callbacks where provider_sid = any(v_sids);
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('early_status_callbacks', v_n);
  delete from public.ai_runs where conversation_id = any(v_ids);
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('ai_runs', v_n);
  delete from public.advisor_alerts where conversation_id = any(v_ids);
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('advisor_alerts', v_n);
  delete from public.messages where conversation_id = any(v_ids);
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('messages', v_n);
  delete from public.conversations where id = any(v_ids);
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('conversations', v_n);
  -- Unrouted messages belong to no tenant: every one from this number goes.
  delete from public.unrouted_messages
  where from_number in (p_phone, 'whatsapp:' || p_phone);
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('unrouted_messages', v_n);
  -- Realtime's copies of the broadcasts (payloads hold the rows).
  delete from realtime.messages r
  where r.payload::text like '%' || p_phone || '%'
     or exists (select 1 from unnest(v_ids || v_message_ids) i
                where r.payload::text like '%' || i::text || '%');
  get diagnostics v_n = row_count;
  v_counts := v_counts || jsonb_build_object('realtime_messages', v_n);

  v_counts := v_request.counts || v_counts;
  update public.erasure_requests set status = 'done', counts = v_counts, finished_at = now(),
    conversation_ids = v_ids
  where id = p_request_id;
  perform private.audit(v_request.tenant_id, 'customer.erased', 'erasure_request',
    p_request_id::text, v_counts, v_request.requested_by);
  return jsonb_build_object('pending', false, 'counts', v_counts);
end
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.export_customer(uuid, uuid, text)',
    'public.prepare_customer_erasure(uuid, uuid, text)',
    'public.record_erasure_progress(uuid, integer, integer)',
    'public.finish_customer_erasure(uuid, text, text[])',
    'public.purge_audit_events(timestamptz, integer)'
  ] loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to assistant_functions, service_role', f);
  end loop;
end
$$;
revoke all on function private.refuse_audit_change(), private.audit(uuid, text, text, text, jsonb, uuid),
  private.audit_row_change(), private.audit_ai_control(), private.admin_tenant(uuid, uuid),
  private.acting_tenant(uuid, uuid, text[], text),
  private.media_paths(jsonb), private.customer_conversation_ids(uuid, text),
  private.customer_objects(uuid[])
  from public, anon, authenticated;
