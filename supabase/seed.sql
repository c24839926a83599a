-- Demo data: one tenant, an admin login, and the seven advisors of the original documents,
-- each with a login user, so a dashboard or the local stack works at once.
-- Logins use the password dev-password (its bcrypt hash below, as Supabase Auth stores it). Never load this on a real project.
-- Users are written as Supabase Auth (GoTrue) writes them, so they can sign in with email and
-- password: confirmed email, empty strings (not NULL) in the token columns GoTrue scans, and
-- an email identity per user.

insert into auth.users (instance_id, id, aud, role, email, encrypted_password, email_confirmed_at,
  raw_app_meta_data, raw_user_meta_data)
values
  ('00000000-0000-0000-0000-000000000000', '00000000-0000-4000-8000-000000000001', 'authenticated', 'authenticated',
   'admin@demo.local', '$2b$10$I97.JXUWT.qyhZ2MzHd0S.yfMYd5reIJpskeYbZinJ8boacHsWAdi', now(),
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "Demo Admin"}'),
  ('00000000-0000-0000-0000-000000000000', '00000000-0000-4000-8000-000000000101', 'authenticated', 'authenticated',
   'maria@demo.local', '$2b$10$I97.JXUWT.qyhZ2MzHd0S.yfMYd5reIJpskeYbZinJ8boacHsWAdi', now(),
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "María González"}'),
  ('00000000-0000-0000-0000-000000000000', '00000000-0000-4000-8000-000000000102', 'authenticated', 'authenticated',
   'carlos@demo.local', '$2b$10$I97.JXUWT.qyhZ2MzHd0S.yfMYd5reIJpskeYbZinJ8boacHsWAdi', now(),
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "Carlos Rodríguez"}'),
  ('00000000-0000-0000-0000-000000000000', '00000000-0000-4000-8000-000000000103', 'authenticated', 'authenticated',
   'ana@demo.local', '$2b$10$I97.JXUWT.qyhZ2MzHd0S.yfMYd5reIJpskeYbZinJ8boacHsWAdi', now(),
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "Ana López"}'),
  ('00000000-0000-0000-0000-000000000000', '00000000-0000-4000-8000-000000000104', 'authenticated', 'authenticated',
   'diego@demo.local', '$2b$10$I97.JXUWT.qyhZ2MzHd0S.yfMYd5reIJpskeYbZinJ8boacHsWAdi', now(),
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "Diego Martín"}'),
  ('00000000-0000-0000-0000-000000000000', '00000000-0000-4000-8000-000000000105', 'authenticated', 'authenticated',
   'sofia@demo.local', '$2b$10$I97.JXUWT.qyhZ2MzHd0S.yfMYd5reIJpskeYbZinJ8boacHsWAdi', now(),
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "Sofía Herrera"}'),
  ('00000000-0000-0000-0000-000000000000', '00000000-0000-4000-8000-000000000106', 'authenticated', 'authenticated',
   'luis@demo.local', '$2b$10$I97.JXUWT.qyhZ2MzHd0S.yfMYd5reIJpskeYbZinJ8boacHsWAdi', now(),
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "Luis Gómez"}'),
  ('00000000-0000-0000-0000-000000000000', '00000000-0000-4000-8000-000000000107', 'authenticated', 'authenticated',
   'carmen@demo.local', '$2b$10$I97.JXUWT.qyhZ2MzHd0S.yfMYd5reIJpskeYbZinJ8boacHsWAdi', now(),
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "Carmen Vega"}')
on conflict (id) do nothing;

update auth.users set
  confirmation_token = coalesce(confirmation_token, ''),
  recovery_token = coalesce(recovery_token, ''),
  email_change_token_new = coalesce(email_change_token_new, ''),
  email_change = coalesce(email_change, ''),
  created_at = coalesce(created_at, now()),
  updated_at = coalesce(updated_at, now())
where email like '%@demo.local';

insert into auth.identities (provider_id, user_id, identity_data, provider, last_sign_in_at,
  created_at, updated_at)
select u.id::text, u.id,
  jsonb_build_object('sub', u.id::text, 'email', u.email, 'email_verified', true,
    'phone_verified', false),
  'email', now(), now(), now()
from auth.users u
where u.email like '%@demo.local'
on conflict (provider_id, provider) do nothing;

insert into public.tenants (id, name) values
  ('00000000-0000-4000-8000-00000000a001', 'Demo Business')
on conflict (id) do nothing;

insert into public.tenant_members (tenant_id, user_id, role) values
  ('00000000-0000-4000-8000-00000000a001', '00000000-0000-4000-8000-000000000001', 'admin'),
  ('00000000-0000-4000-8000-00000000a001', '00000000-0000-4000-8000-000000000101', 'advisor'),
  ('00000000-0000-4000-8000-00000000a001', '00000000-0000-4000-8000-000000000102', 'advisor'),
  ('00000000-0000-4000-8000-00000000a001', '00000000-0000-4000-8000-000000000103', 'advisor'),
  ('00000000-0000-4000-8000-00000000a001', '00000000-0000-4000-8000-000000000104', 'advisor'),
  ('00000000-0000-4000-8000-00000000a001', '00000000-0000-4000-8000-000000000105', 'advisor'),
  ('00000000-0000-4000-8000-00000000a001', '00000000-0000-4000-8000-000000000106', 'advisor'),
  ('00000000-0000-4000-8000-00000000a001', '00000000-0000-4000-8000-000000000107', 'advisor')
on conflict do nothing;

insert into public.advisors (id, tenant_id, user_id, name, phone_number, twilio_phone_number, settings)
values
  ('00000000-0000-4000-8000-00000000b001', '00000000-0000-4000-8000-00000000a001',
   '00000000-0000-4000-8000-000000000101', 'María González', '+57301234567', '+14155238886',
   '{"language": "es", "greeting": "¡Hola! Soy el asistente de María. ¿En qué puedo ayudarte?", "prompt": "Eres el asistente virtual de María González, asesor comercial. Responde en español, breve y cordial. Si el cliente pide hablar con una persona, usa la herramienta handoff_to_human.", "audio_available": false, "notify_on_handoff": true}'),
  ('00000000-0000-4000-8000-00000000b002', '00000000-0000-4000-8000-00000000a001',
   '00000000-0000-4000-8000-000000000102', 'Carlos Rodríguez', '+57302345678', '+5742044644',
   '{"language": "es", "greeting": "¡Hola! Soy el asistente de Carlos. ¿En qué puedo ayudarte?", "prompt": "Eres el asistente virtual de Carlos Rodríguez, asesor comercial. Responde en español, breve y cordial. Si el cliente pide hablar con una persona, usa la herramienta handoff_to_human.", "audio_available": false, "notify_on_handoff": true}'),
  ('00000000-0000-4000-8000-00000000b003', '00000000-0000-4000-8000-00000000a001',
   '00000000-0000-4000-8000-000000000103', 'Ana López', '+57303456789', '+14155238887',
   '{"language": "es", "greeting": "¡Hola! Soy el asistente de Ana. ¿En qué puedo ayudarte?", "prompt": "Eres el asistente virtual de Ana López, asesor comercial. Responde en español, breve y cordial. Si el cliente pide hablar con una persona, usa la herramienta handoff_to_human.", "audio_available": false, "notify_on_handoff": true}'),
  ('00000000-0000-4000-8000-00000000b004', '00000000-0000-4000-8000-00000000a001',
   '00000000-0000-4000-8000-000000000104', 'Diego Martín', '+57304567890', '+5742044645',
   '{"language": "es", "greeting": "¡Hola! Soy el asistente de Diego. ¿En qué puedo ayudarte?", "prompt": "Eres el asistente virtual de Diego Martín, asesor comercial. Responde en español, breve y cordial. Si el cliente pide hablar con una persona, usa la herramienta handoff_to_human.", "audio_available": false, "notify_on_handoff": true}'),
  ('00000000-0000-4000-8000-00000000b005', '00000000-0000-4000-8000-00000000a001',
   '00000000-0000-4000-8000-000000000105', 'Sofía Herrera', '+57305678901', '+14155238888',
   '{"language": "es", "greeting": "¡Hola! Soy el asistente de Sofía. ¿En qué puedo ayudarte?", "prompt": "Eres el asistente virtual de Sofía Herrera, asesor comercial. Responde en español, breve y cordial. Si el cliente pide hablar con una persona, usa la herramienta handoff_to_human.", "audio_available": false, "notify_on_handoff": true}'),
  ('00000000-0000-4000-8000-00000000b006', '00000000-0000-4000-8000-00000000a001',
   '00000000-0000-4000-8000-000000000106', 'Luis Gómez', '+57306789012', '+5742044646',
   '{"language": "es", "greeting": "¡Hola! Soy el asistente de Luis. ¿En qué puedo ayudarte?", "prompt": "Eres el asistente virtual de Luis Gómez, asesor comercial. Responde en español, breve y cordial. Si el cliente pide hablar con una persona, usa la herramienta handoff_to_human.", "audio_available": false, "notify_on_handoff": true}'),
  ('00000000-0000-4000-8000-00000000b007', '00000000-0000-4000-8000-00000000a001',
   '00000000-0000-4000-8000-000000000107', 'Carmen Vega', '+57307890123', '+14155238889',
   '{"language": "es", "greeting": "¡Hola! Soy el asistente de Carmen. ¿En qué puedo ayudarte?", "prompt": "Eres el asistente virtual de Carmen Vega, asesor comercial. Responde en español, breve y cordial. Si el cliente pide hablar con una persona, usa la herramienta handoff_to_human.", "audio_available": false, "notify_on_handoff": true}')
on conflict (id) do nothing;

-- A small FAQ for María's customers, so the demo's answers come from the business's own
-- documents (what an admin uploads through POST /knowledge).
insert into public.knowledge_sources (id, tenant_id, advisor_id, title, kind, language)
values ('00000000-0000-4000-8000-00000000c001', '00000000-0000-4000-8000-00000000a001',
  '00000000-0000-4000-8000-00000000b001', 'Preguntas frecuentes de María', 'qa_csv', 'es')
on conflict (id) do nothing;
insert into public.knowledge_chunks (source_id, tenant_id, advisor_id, position, heading, content, config)
select '00000000-0000-4000-8000-00000000c001', '00000000-0000-4000-8000-00000000a001',
  '00000000-0000-4000-8000-00000000b001', n, q, a, 'pg_catalog.spanish'::regconfig
from (values
  (1, '¿Cuánto cuesta el plan empresarial?',
   'El plan empresarial cuesta 50.000 pesos al mes por usuario e incluye soporte prioritario.'),
  (2, '¿Cuánto cuesta el plan básico?',
   'El plan básico cuesta 20.000 pesos al mes por usuario.'),
  (3, '¿Hacen envíos a Medellín y otras ciudades?',
   'Sí, enviamos a Medellín, Cali y Barranquilla en 2 días hábiles; a otras ciudades en 3 a 5.'),
  (4, '¿Cuál es el horario de atención?',
   'Atendemos de lunes a viernes de 8:00 a 18:00 y los sábados de 9:00 a 13:00.'),
  (5, '¿Qué medios de pago aceptan?',
   'Aceptamos tarjeta de crédito, PSE, Nequi y transferencia bancaria.')
) as faq(n, q, a)
where not exists (select 1 from public.knowledge_chunks
                  where source_id = '00000000-0000-4000-8000-00000000c001');
select private.refresh_knowledge_terms('00000000-0000-4000-8000-00000000a001');
