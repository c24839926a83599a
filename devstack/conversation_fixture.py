"""Realistic WhatsApp input for the cost and latency benchmarks (devstack/cost_bench.py).

BURSTS: what customers send before the first answer, as (seconds since the previous message,
text): single complete questions, and bursts of 2 to 4 messages 0.3 to 2 s apart, the way
people type on a phone (greeting first, the question last; sometimes an afterthought after a
complete question; sometimes only fragments).

CONVERSATIONS: the customer's side of longer conversations (20 turns each, longer than the
model's history window), one message per turn, for the token report.
"""

from __future__ import annotations

Sequence = list[tuple[float, str]]

SINGLE_QUESTIONS: list[Sequence] = [
    [(0, "¿Cuánto cuesta el plan básico?")],
    [(0, "¿Tienen envíos a Cali?")],
    [(0, "Buenas tardes, ¿a qué hora abren el sábado?")],
    [(0, "Quisiera saber si aceptan pago con tarjeta de crédito")],
    [(0, "Necesito cambiar la dirección de entrega de mi pedido.")],
    [(0, "¿El precio incluye IVA?")],
    [(0, "Hola, ¿todavía tienen disponible la referencia azul en talla M?")],
    [(0, "Me llegó el pedido incompleto, faltan dos productos")],
    [(0, "¿Hacen factura electrónica?")],
    [(0, "Quiero hablar con una persona por favor")],
    [(0, "Gracias por la información, ¿cómo hago el pago?")],
    [(0, "¿Cuál es el horario de atención?")],
    [(0, "Buenos días. Quiero cotizar 20 unidades para mi empresa.")],
    [(0, "¿Dónde están ubicados?")],
    [(0, "Por favor envíenme el catálogo actualizado")],
    [(0, "¿Puedo recoger en tienda hoy mismo?")],
]

BURSTS: list[Sequence] = [
    # Greeting or opener first, the question last.
    [(0, "Hola"), (1.2, "¿Tienen disponibilidad para el sábado?")],
    [(0, "Buenas tardes"), (0.8, "una pregunta"), (1.5, "¿hacen domicilios a Bello?")],
    [(0, "hola"), (0.6, "mira"), (1.1, "quería saber el precio del plan familiar")],
    [(0, "Buenos días"), (1.8, "¿El envío es gratis por compras de más de 100 mil?")],
    [
        (0, "Hola!"),
        (0.4, "Disculpa"),
        (0.9, "una consulta"),
        (1.3, "¿me pueden enviar la factura?"),
    ],
    [(0, "oye"), (0.7, "¿sí tienen el modelo negro?")],
    [(0, "Hola buenas"), (2.0, "Necesito el certificado de garantía de mi compra")],
    [(0, "una pregunta"), (1.0, "¿abren los festivos?")],
    # A question split in fragments, none complete on its own.
    [(0, "quiero info"), (0.5, "del plan"), (0.9, "empresarial")],
    [(0, "hola"), (0.3, "me interesa"), (0.8, "el de 50 mil")],
    [(0, "mira"), (1.4, "lo del pedido"), (0.6, "de ayer")],
    [(0, "Buenas"), (0.9, "para cotizar")],
    # A complete question, then an afterthought.
    [(0, "¿Tienen envíos?"), (0.8, "a Cali")],
    [(0, "¿Cuánto vale el plan básico?"), (1.6, "mensual")],
    [(0, "Quiero cambiar mi pedido por una talla más grande."), (1.2, "la L")],
    [(0, "¿Aceptan Nequi?"), (0.5, "o Daviplata")],
    # Long gaps: the customer really sent two messages.
    [(0, "hola"), (1.9, "¿el precio de la consulta?")],
    [(0, "Buenas noches"), (2.0, "¿mañana abren?")],
    [(0, "hola"), (0.5, "buenas"), (1.7, "una duda"), (0.9, "¿hasta qué hora atienden hoy?")],
    [(0, "Gracias"), (1.0, "muy amable")],
]

FIXTURE: list[Sequence] = SINGLE_QUESTIONS + BURSTS

CONVERSATIONS: list[list[str]] = [
    [
        "Hola, ¿cuánto cuesta el plan básico?",
        "¿Y qué incluye?",
        "¿Se puede pagar mensual?",
        "¿Aceptan tarjeta de crédito?",
        "¿Hay permanencia mínima?",
        "¿Qué pasa si quiero cancelar antes?",
        "¿El plan familiar cuánto vale?",
        "¿Cuántos pueden usar el plan familiar?",
        "¿Puedo cambiar de plan después?",
        "¿Cómo me inscribo?",
        "¿Necesitan algún documento?",
        "¿La cédula sirve?",
        "¿Cuándo empieza a funcionar el plan?",
        "¿El primer mes se paga completo?",
        "¿Me llega la factura al correo?",
        "¿Puedo agregar a mi mamá después?",
        "¿Tiene costo adicional?",
        "¿Cómo los contacto si tengo un problema?",
        "¿Atienden también los domingos?",
        "Perfecto, gracias por la información.",
    ],
    [
        "Buenas tardes, tengo un problema con mi pedido.",
        "El número es 48213.",
        "Me llegó incompleto, faltan dos productos.",
        "Los audífonos y el cargador.",
        "¿Cuándo me los pueden enviar?",
        "¿Tiene algún costo el reenvío?",
        "¿Me llega a la misma dirección?",
        "Ok, ¿y me mandan la guía de seguimiento?",
        "¿Por dónde la puedo consultar?",
        "¿Y si no llega esta semana?",
        "Listo, quedo atento.",
        "¿Me avisan cuando lo despachen?",
        "¿Por WhatsApp o por correo?",
        "¿Puedo cambiar la franja de entrega?",
        "Prefiero en la tarde.",
        "¿El mensajero llama antes de llegar?",
        "¿Y si no estoy en casa?",
        "¿Puede recibir el portero?",
        "Vale, le aviso al portero.",
        "Muchas gracias por la ayuda.",
    ],
    [
        "Hola, quiero cotizar 20 sillas de oficina.",
        "Las ergonómicas con apoyabrazos.",
        "¿Tienen en color negro?",
        "¿Cuál es el tiempo de entrega?",
        "¿Hacen descuento por volumen?",
        "¿La garantía cuánto dura?",
        "¿Incluye instalación?",
        "¿Facturan a nombre de empresa?",
        "El NIT se los envío después.",
        "¿Puedo pagar la mitad al pedir y la mitad al recibir?",
        "¿Me envían la cotización por correo?",
        "¿Cuánto tiempo es válida la cotización?",
        "¿Tienen también escritorios?",
        "¿Los escritorios de 1,20 m cuánto valen?",
        "¿Si llevo sillas y escritorios el descuento aumenta?",
        "¿Hacen visita técnica para medir?",
        "¿La visita tiene costo?",
        "¿Qué días pueden venir?",
        "El jueves en la mañana nos sirve.",
        "Gracias, espero la cotización.",
    ],
]
