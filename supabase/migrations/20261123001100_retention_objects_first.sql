-- Retention removes media before rows, and closed conversations keep nothing of the customer.
--
-- purge_messages deleted rows and handed back their Storage paths in the same call: when the
-- Storage call then failed, the paths were gone with the rows and the files outlived
-- retention. Now the sweep reads a batch (expired_messages), removes its objects, and only
-- then deletes exactly those rows (delete_messages). A failure in between leaves the rows, so
-- the next run tries again (removing an object that is already gone is not an error).

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
    'media_paths', (select coalesce(jsonb_agg(item ->> 'path'), '[]'::jsonb)
                    from batch, jsonb_array_elements(batch.media) item where item ? 'path'))
$$;

create or replace function public.delete_messages(p_ids uuid[], p_cutoff timestamptz)
returns integer
language sql security definer set search_path = '' as $$
  with deleted as (
    delete from public.messages where id = any(p_ids) and created_at < p_cutoff returning 1
  )
  select count(*)::integer from deleted
$$;

drop function public.purge_messages(uuid, timestamptz, integer);

-- Conversations whose messages are all gone are closed, never deleted, and forget what was
-- said and who said it: preview, the customer's profile name, the handoff reason.
create or replace function public.close_empty_conversations(p_limit integer) returns integer
language sql security definer set search_path = '' as $$
  with closing as (
    select c.id from public.conversations c
    where (c.status <> 'closed' or c.last_message_preview is not null
           or c.customer_name is not null or c.handoff_reason is not null)
      and not exists (select 1 from public.messages m where m.conversation_id = c.id)
    limit p_limit
    for update skip locked
  ),
  closed as (
    update public.conversations c set status = 'closed', unread_count = 0,
      last_message_preview = null, customer_name = null, handoff_reason = null,
      needs_human = false
    from closing where c.id = closing.id returning 1
  )
  select count(*)::integer from closed
$$;

do $$
declare
  f text;
begin
  foreach f in array array[
    'public.expired_messages(uuid, timestamptz, integer)',
    'public.delete_messages(uuid[], timestamptz)'
  ] loop
    execute format('revoke all on function %s from public, anon, authenticated', f);
    execute format('grant execute on function %s to assistant_functions, service_role', f);
  end loop;
end
$$;
