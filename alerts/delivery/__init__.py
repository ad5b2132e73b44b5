"""The mail layer: render templates, build and sign messages, hand them to a sender."""
