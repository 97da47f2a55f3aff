import json

from django import template

register = template.Library()


@register.filter
def pretty_json(value) -> str:
    """Payloads as the JSON they are (not Python's repr); autoescaped by the template."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@register.filter
def short_function(name: str) -> str:
    """`app.handlers.on_order_created` → `on_order_created`; the full name goes in a title."""
    return name.rsplit(".", 1)[-1]
