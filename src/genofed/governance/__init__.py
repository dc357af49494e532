"""Who is asking and what they may see: Passports, tiers, disclosure control, DAC, audit."""
