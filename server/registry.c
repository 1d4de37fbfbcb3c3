/* registry: not yet written */
