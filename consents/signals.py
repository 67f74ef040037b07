"""Signal receivers of the consents app. The cookies work adds the sign-in receiver that links visitor ids."""
