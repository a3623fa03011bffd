"""Select stage: the diver mask of every frame from its candidate label map (thesis 4.3.1)."""
