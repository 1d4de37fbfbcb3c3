/* reader: not yet written */
