"""kopf handlers, one module per concern (registered by importing them; see ``humanizer_operator.main``)."""
