/* engine: not yet written */
