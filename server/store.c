/* store: not yet written */
