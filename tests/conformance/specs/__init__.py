"""One module per registry family, each defining ``FAMILY`` (a ``FamilySpec``)."""
