/* pgembed: not yet written */
