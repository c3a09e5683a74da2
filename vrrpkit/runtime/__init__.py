"""The anyio runtime: :class:`Instance` pumps transports into a core router."""
