"""An agent benchmark end to end: a real loop with the ``openai`` client against ``steerlab serve``, tools run by
safe local stand-ins, held-out tasks with checkable answers (``steerlab agent eval``)."""
