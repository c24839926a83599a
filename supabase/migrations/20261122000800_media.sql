-- Media: the private Storage bucket for WhatsApp attachments and voice replies, who may read
-- its objects, and the SQL the webhook and the sweep use to record downloads.
--
-- Object names start with <tenant>/<advisor>/<conversation>/..., so the advisor id (second
-- folder) decides visibility, exactly like the conversation's own rows.

insert into storage.buckets (id, name, public, file_size_limit)
values ('whatsapp-media', 'whatsapp-media', false, 16 * 1024 * 1024)
on conflict (id) do nothing;

create policy "media of visible advisors is readable" on storage.objects
  for select to authenticated
  using (
    bucket_id = 'whatsapp-media'
    and (storage.foldername(name))[2] in (select v::text from private.visible_advisor_ids() v)
  );

create index if not exists messages_media_failed_idx on public.messages (created_at)
  where direction = 'inbound' and media @> '[{"status": "failed"}]';

-- What happened to an inbound message's attachments (stored, failed, too large), and the
-- transcript of a voice note.
create or replace function public.update_inbound_media(
  p_message_id uuid, p_media jsonb, p_transcript text default null
) returns void
language sql security definer set search_path = '' as $$
  update public.messages set media = p_media, transcript = coalesce(p_transcript, transcript)
  where id = p_message_id and direction = 'inbound'
$$;

-- Inbound attachments whose download or upload failed: claimed (status 'retrying', attempt
-- counted) so overlapping sweeps never take the same message.
create or replace function public.claim_media_retries(
  p_limit integer, p_max_age interval, p_max_attempts integer
) returns jsonb
language plpgsql security definer set search_path = '' as $$
declare
  v_result jsonb;
begin
  with picked as (
    select m.id from public.messages m
    where m.direction = 'inbound' and m.media @> '[{"status": "failed"}]'
      and m.created_at > now() - p_max_age
      and exists (
        select 1 from jsonb_array_elements(m.media) i
        where i ->> 'status' = 'failed' and coalesce((i ->> 'attempts')::integer, 1) < p_max_attempts)
    order by m.created_at
    limit p_limit
    for update skip locked
  ),
  claimed as (
    update public.messages m set media = (
      select jsonb_agg(case when e.item ->> 'status' = 'failed'
        then e.item || jsonb_build_object('status', 'retrying',
          'attempts', coalesce((e.item ->> 'attempts')::integer, 1) + 1)
        else e.item end order by e.n)
      from jsonb_array_elements(m.media) with ordinality as e(item, n))
    from picked where m.id = picked.id
    returning m.id, m.tenant_id, m.advisor_id, m.conversation_id, m.media
  )
  select coalesce(jsonb_agg(jsonb_build_object('message_id', id, 'tenant_id', tenant_id,
    'advisor_id', advisor_id, 'conversation_id', conversation_id, 'media', media)), '[]'::jsonb)
  into v_result from claimed;
  return v_result;
end
$$;

revoke all on function public.update_inbound_media(uuid, jsonb, text),
  public.claim_media_retries(integer, interval, integer) from public, anon, authenticated;
grant execute on function public.update_inbound_media(uuid, jsonb, text),
  public.claim_media_retries(integer, interval, integer) to assistant_functions, service_role;
